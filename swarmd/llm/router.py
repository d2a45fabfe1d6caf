"""The router: one retry loop and one budget per task, over a chain of models.

For each request it walks the chain in order (primary first), skipping models that are
cooling down or already out for this task, and sends one request at a time:

- success: report it, price it, return it with every try made;
- RETRY (429 rate limit, 5xx, 529, timeouts, cut-short or malformed bodies): wait for the
  Retry-After (capped) or an exponential backoff with jitter, then ask the same model again.
  A 429 rate limit with ``fallback_on_rate_limit`` instead cools the model down for its
  Retry-After, so the chain moves on at once and comes back round when the cool-down ends.
  A model that keeps failing is out for this task after ``max_retries_per_model`` retries,
  and cools down for every worker;
- NEXT (quota, 401/403, 404, an answer past the size cap): the model is out for this task
  and cools down for everybody;
- STOP (400 and other request errors): fail now, naming the model and what it said.

When every remaining model is cooling, the router waits for the earliest cool-down to end if
that falls within the deadline. Nothing retries underneath: httpx makes one request per
call (its transport has no retries), and the providers never loop.

``deadline`` and the ``clock`` are wall-clock seconds: the broker lives in the daemon.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import httpx

from swarmd.errors import ProviderError
from swarmd.llm.echo import EchoProvider
from swarmd.llm.errors import (
    AllModelsFailedError,
    BudgetExceededError,
    Disposition,
    ModelCallError,
    ModelCoolingError,
    NotConfiguredError,
    RateLimitedError,
    RequestRejectedError,
    RequestTimeoutError,
)
from swarmd.llm.permits import PermitBroker, Sleep
from swarmd.llm.provider_config import ProviderConfig
from swarmd.llm.providers import (
    MAX_RESPONSE_BYTES,
    AnthropicProvider,
    HTTPProvider,
    MiniMaxProvider,
    OpenAICompatibleProvider,
    OpenAIProvider,
    Provider,
)
from swarmd.llm.tls import client_context
from swarmd.llm.types import ChatRequest, ChatResponse, Clock, ModelTry, Outcome, RouterResult

MIN_COOLING_WAIT_S = 0.01


@dataclass(frozen=True, slots=True)
class RequestTimeouts:
    """Seconds allowed to connect, between bytes of the answer, and for the whole request.

    A non-streamed answer sends nothing until the model has finished, so ``read`` must cover
    a whole generation.
    """

    connect: float = 10.0
    read: float = 300.0
    total: float = 600.0


def create_http_client(
    *, trust_env: bool = True, max_connections: int = 20, tls: bool = True
) -> httpx.AsyncClient:
    """The client the router expects: no transport retries, pooled, HTTP/1.1.

    ``tls=False`` is for chains whose endpoints are all plain ``http://`` (a local Ollama,
    a loopback server): they need no CA bundle. The TLS context is made once a process
    (``swarmd.llm.tls``).
    """
    context = client_context(verify=tls, trust_env=trust_env)
    transport = httpx.AsyncHTTPTransport(
        retries=0,
        limits=httpx.Limits(max_connections=max_connections),
        trust_env=trust_env,
        verify=context,
    )
    return httpx.AsyncClient(transport=transport, trust_env=trust_env, verify=context)


def build_providers(
    config: ProviderConfig, *, max_response_bytes: int = MAX_RESPONSE_BYTES
) -> dict[str, Provider]:
    """One provider object per configured name, plus the offline ``echo``."""
    kinds: dict[str, type[HTTPProvider]] = {
        "openai": OpenAIProvider,
        "anthropic": AnthropicProvider,
        "minimax": MiniMaxProvider,
    }
    providers: dict[str, Provider] = {"echo": EchoProvider()}
    for name, endpoint in config.endpoints.items():
        kind = kinds.get(name, OpenAICompatibleProvider)
        providers[name] = kind(endpoint, max_response_bytes=max_response_bytes)
    return providers


@dataclass
class _ChainRun:
    """What one ``complete`` call has learnt about its chain so far."""

    chain: tuple[str, ...]
    tries: list[ModelTry] = field(default_factory=list)
    last_word: dict[str, str] = field(default_factory=dict)  # model -> what it last answered
    cooling: dict[str, str] = field(default_factory=dict)  # model -> why it was skipped
    retries: dict[str, int] = field(default_factory=dict)
    out: set[str] = field(default_factory=set)  # models this call will not ask again
    budget_spent: bool = False  # a model was given up for lack of time, not for failing

    def candidates(self) -> list[str]:
        return [model for model in self.chain if model not in self.out]

    def record(self, model: str, error: ModelCallError, latency_s: float) -> None:
        self.tries.append(
            ModelTry(model, error.outcome, error.status, error.description, latency_s)
        )
        self.last_word[model] = error.description

    def failure(self, *, budget_spent: bool = False) -> AllModelsFailedError:
        named = {
            model: self.last_word.get(model) or self.cooling.get(model) or "not tried"
            for model in self.chain
        }
        spent = budget_spent or self.budget_spent
        return AllModelsFailedError(named, self.tries, budget_spent=spent)


class Router:
    """Answers chat requests from a chain of ``provider/model`` names. One per worker."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        providers: ProviderConfig,
        broker: PermitBroker,
        *,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        fallback_on_rate_limit: bool = True,
        max_retries_per_model: int = 3,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        retry_after_cap: float = 60.0,
        cooldown_s: float = 60.0,
        timeouts: RequestTimeouts | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._client = client
        self._config = providers
        self._providers = build_providers(providers, max_response_bytes=max_response_bytes)
        self._broker = broker
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.fallback_on_rate_limit = fallback_on_rate_limit
        self.max_retries_per_model = max_retries_per_model
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_cap = retry_after_cap
        self.cooldown_s = cooldown_s
        self.timeouts = timeouts or RequestTimeouts()

    async def complete(
        self, request: ChatRequest, chain: Sequence[str], *, deadline: float
    ) -> RouterResult:
        """The first answer any model in ``chain`` gives before ``deadline`` (wall-clock).

        Raises ``AllModelsFailedError`` when every model failed or the budget ran out, and
        ``RequestRejectedError`` when a model refused the request itself.
        """
        if not chain:
            raise ProviderError("no model to ask: the model chain is empty")
        run = _ChainRun(tuple(dict.fromkeys(chain)))
        while True:
            model = await self._take_permitted_model(run, deadline)
            started = time.perf_counter()
            try:
                response = await self._send(model, request, deadline)
            except ModelCallError as exc:
                run.record(model, exc, time.perf_counter() - started)
                await self._settle_failure(run, model, exc, deadline)
                continue
            return await self._settle_success(run, model, response)

    async def _take_permitted_model(self, run: _ChainRun, deadline: float) -> str:
        """The first model of the chain that may be asked now, once its permit is granted."""
        while True:
            if self._clock() >= deadline:
                raise run.failure(budget_spent=True)
            cooling_ends: list[float] = []
            for model in run.candidates():
                provider = self._provider_for(model)
                if provider is None:
                    name = self._config.provider_name(model)
                    # repr escapes what does not print, as quote would.
                    error = NotConfiguredError(model, f"no provider named {name!r} is configured")
                    run.record(model, error, 0.0)
                    run.out.add(model)
                    continue
                if not provider.needs_permit:
                    return model
                try:
                    await self._broker.acquire(model, deadline=deadline)
                except ModelCoolingError as exc:
                    cooling_ends.append(exc.until)
                    run.cooling[model] = self._describe_cooling(exc)
                    continue
                except BudgetExceededError:
                    run.cooling[model] = "no rate-limit permit before the deadline"
                    run.out.add(model)
                    run.budget_spent = True
                    continue
                return model
            if not cooling_ends:
                raise run.failure()
            earliest = min(cooling_ends)
            if earliest >= deadline:
                raise run.failure(budget_spent=True)
            # A floor, so a cool-down that ends "now" on the daemon's clock cannot spin us.
            await self._sleep(max(MIN_COOLING_WAIT_S, earliest - self._clock()))

    async def _send(self, model: str, request: ChatRequest, deadline: float) -> ChatResponse:
        provider = self._providers[self._config.provider_name(model)]
        budget = min(self.timeouts.total, deadline - self._clock())
        if budget <= 0:
            raise RequestTimeoutError(model, "no time left in the task's budget")
        timeout = httpx.Timeout(
            connect=min(self.timeouts.connect, budget),
            read=min(self.timeouts.read, budget),
            write=min(self.timeouts.read, budget),
            pool=min(self.timeouts.connect, budget),
        )
        try:
            # httpx's timeouts bound each phase; this bounds the request as a whole.
            async with asyncio.timeout(budget):
                return await provider.complete(
                    self._client,
                    model,
                    model.partition("/")[2],
                    request,
                    http_timeout=timeout,
                    clock=self._clock,
                )
        except TimeoutError as exc:
            raise RequestTimeoutError(model, f"no answer within {budget:.1f}s") from exc

    async def _settle_failure(
        self, run: _ChainRun, model: str, error: ModelCallError, deadline: float
    ) -> None:
        """Report the failure, then decide: fail now, move on, or wait and retry."""
        now = self._clock()
        outcome = Outcome(
            ok=False,
            status=error.status,
            disposition=error.disposition.value,
            retry_after=error.retry_after,
            error=error.description,
            reason=error.outcome,
        )
        if error.disposition is Disposition.STOP:
            await self._report(model, outcome)
            raise RequestRejectedError(error, run.tries) from error
        if error.disposition is Disposition.NEXT:
            run.out.add(model)
            cool_for = self._capped(error.retry_after) or self.cooldown_s
            await self._report(model, replace(outcome, cool_until=now + cool_for))
            return
        retries = run.retries[model] = run.retries.get(model, 0) + 1
        if retries > self.max_retries_per_model:
            # The model failed this task every time it was asked: spare the other workers.
            run.out.add(model)
            await self._report(model, replace(outcome, cool_until=now + self.cooldown_s))
            return
        delay = self._capped(error.retry_after)
        if delay is None:
            delay = self._backoff(retries)
        if isinstance(error, RateLimitedError) and self.fallback_on_rate_limit:
            await self._report(model, replace(outcome, cool_until=now + delay))
            return
        await self._report(model, outcome)
        if now + delay >= deadline:
            run.out.add(model)  # its retry would land past the budget; others may still answer
            run.budget_spent = True
            return
        await self._sleep(delay)

    async def _settle_success(
        self, run: _ChainRun, model: str, response: ChatResponse
    ) -> RouterResult:
        run.tries.append(ModelTry(model, "ok", 200, None, response.latency_s))
        await self._report(model, Outcome(ok=True, status=200))
        return RouterResult(
            response=response, tries=tuple(run.tries), cost_usd=self._config.cost_of(response)
        )

    async def _report(self, model: str, outcome: Outcome) -> None:
        if self._providers[self._config.provider_name(model)].needs_permit:
            await self._broker.report(model, outcome)

    def _provider_for(self, model: str) -> Provider | None:
        if "/" not in model:
            return None
        return self._providers.get(self._config.provider_name(model))

    def _capped(self, retry_after: float | None) -> float | None:
        return None if retry_after is None else min(retry_after, self.retry_after_cap)

    def _backoff(self, retries: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** (retries - 1))
        # "Equal jitter": at least half the ceiling, so retries never bunch up at zero.
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _describe_cooling(self, exc: ModelCoolingError) -> str:
        left = max(0.0, exc.until - self._clock())
        after = f" after {exc.reason}" if exc.reason else ""
        return f"cooling down for {left:.0f}s more{after}"
