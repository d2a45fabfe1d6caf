"""The permit broker: where every worker's router asks before a request and reports after.

The rate limit and the cool-downs are global across workers, so they live in the daemon. The
router talks to a ``PermitBroker``; the daemon itself (and the tests) use ``LocalBroker``
directly, and workers use a broker that forwards the same two calls over their channel.

The protocol is small and JSON-friendly on purpose:

- ``acquire(model, deadline=...)`` returns once a rate-limit permit is granted, or raises
  ``ModelCoolingError`` (the model cools down: skip it) or ``BudgetExceededError`` (no permit
  before the deadline). The cool-down check and the grant are one call, so no other worker's
  report can slip between "is it cooling?" and "send".
- ``report(model, outcome)`` records how the request ended; ``outcome.cool_until`` cools the
  model down for everybody.

Every time in the protocol (``deadline``, ``until``, ``cool_until``) is wall-clock seconds since
the epoch (``time.time()``), comparable across processes. Over a channel, a refusal travels as
``refusal_to_dict(exc)`` and is raised again on the worker side by ``raise_refusal(data)``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from swarmd.llm.errors import BudgetExceededError, ModelCoolingError
from swarmd.llm.limits import CooldownTable, ModelStatus, RateLimiter
from swarmd.llm.types import Clock, Outcome

Sleep = Callable[[float], Awaitable[None]]


class PermitBroker(Protocol):
    async def acquire(self, model: str, *, deadline: float) -> None:
        """Wait for a rate-limit permit for ``model``; raise ``ModelCoolingError`` or
        ``BudgetExceededError`` instead when it cannot be granted."""
        ...

    async def report(self, model: str, outcome: Outcome) -> None:
        """Record how a request to ``model`` ended."""
        ...


class LocalBroker:
    """The in-process broker: the daemon's own, answering its workers' calls."""

    def __init__(
        self,
        limiter: RateLimiter,
        cooldowns: CooldownTable,
        *,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        limit_key: Callable[[str], str] | None = None,
    ) -> None:
        self.limiter = limiter
        self.cooldowns = cooldowns
        self._clock = clock
        self._sleep = sleep
        # Which rate-limit bucket a model spends: its provider prefix, unless the daemon
        # resolves aliases (``ProviderConfig.provider_name``) so they share their provider's.
        self._limit_key = limit_key or provider_of

    async def acquire(self, model: str, *, deadline: float) -> None:
        now = self._clock()
        self._refuse_if_cooling(model, now)
        key = self._limit_key(model)
        wait = self.limiter.delay_for(key, now)
        if now + wait > deadline:
            raise BudgetExceededError(model, wait)
        self.limiter.reserve(key, now)
        if wait > 0:
            await self._sleep(wait)
            # Another worker may have cooled the model while this one waited for its turn.
            self._refuse_if_cooling(model, self._clock())

    async def report(self, model: str, outcome: Outcome) -> None:
        self.cooldowns.record(model, outcome, self._clock())

    def cooling_until(self, model: str) -> float | None:
        return self.cooldowns.cooling_until(model, self._clock())

    def snapshot(self) -> dict[str, ModelStatus]:
        return self.cooldowns.snapshot(self._clock())

    def _refuse_if_cooling(self, model: str, now: float) -> None:
        until = self.cooldowns.cooling_until(model, now)
        if until is not None:
            raise ModelCoolingError(model, until, self.cooldowns.cooling_reason(model))


def provider_of(model: str) -> str:
    """The rate-limit key of a ``provider/model`` name: its provider prefix."""
    return model.partition("/")[0]


def refusal_to_dict(exc: ModelCoolingError | BudgetExceededError) -> dict[str, Any]:
    """A permit refusal as JSON, for the daemon's reply to a worker."""
    if isinstance(exc, ModelCoolingError):
        return {"refused": "cooling", "model": exc.model, "until": exc.until, "reason": exc.reason}
    return {"refused": "budget", "model": exc.model, "wait_s": exc.wait_s}


def raise_refusal(data: dict[str, Any] | None) -> None:
    """Raise the refusal ``refusal_to_dict`` encoded; return when ``data`` is a grant."""
    if not data or not data.get("refused"):
        return
    if data["refused"] == "cooling":
        raise ModelCoolingError(str(data["model"]), float(data["until"]), data.get("reason"))
    raise BudgetExceededError(str(data["model"]), float(data["wait_s"]))
