"""What an attempt reports of its model calls: read once here, for status, metrics and show.

An attempt's result details (``AgentResult.details``, stored as the attempt's ``result``)
have one of these shapes, drawn as ``TypedDict``s below:

- an llm attempt: ``model``, ``tries`` (one ``ModelTryReport`` per request), ``usage``
  (``UsageReport``) and ``cost_usd``;
- a planner: the same for its last round, with every round's tries;
- a verify attempt: its checks, with each fix round's report nested under ``fix_rounds``.

The reports come from the database and from other processes, so every reader here checks
types and skips what does not fit instead of trusting the shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict


class UsageReport(TypedDict, total=False):
    prompt_tokens: int  # the whole prompt: the cache's writes and reads below are part of it
    completion_tokens: int
    cache_creation_input_tokens: int  # written to the provider's prompt cache
    cache_creation_1h_input_tokens: int  # of those, into one-hour entries
    cache_read_input_tokens: int  # read from it


class ModelTryReport(TypedDict, total=False):
    model: str
    outcome: str  # ok, rate_limited, server_error, ... (``swarmd.llm.types.ModelTry``)
    status: int | None
    error: str | None
    latency_s: float


class LLMReport(TypedDict, total=False):
    model: str
    tries: list[ModelTryReport]
    usage: UsageReport
    cost_usd: float | None
    truncated: bool  # present (true) when the model stopped at its token limit
    finish_reason: str  # the provider's own word for why, beside ``truncated``
    fix_rounds: list[LLMReport]


@dataclass(frozen=True, slots=True)
class LLMUsage:
    """Tokens and cost of one model's answers."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: LLMUsage) -> LLMUsage:
        return LLMUsage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cost_usd + other.cost_usd,
        )


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Tokens and cost by model, and their sums."""

    by_model: Mapping[str, LLMUsage] = field(default_factory=dict)

    @property
    def total(self) -> LLMUsage:
        return sum(self.by_model.values(), LLMUsage())

    @classmethod
    def from_results(cls, results: Iterable[Mapping[str, Any] | None]) -> UsageTotals:
        by_model: dict[str, LLMUsage] = {}
        for result in results:
            for model, usage in llm_usage(result):
                by_model[model] = by_model.get(model, LLMUsage()) + usage
        return cls(by_model)


def llm_usage(result: Mapping[str, Any] | None) -> Iterator[tuple[str, LLMUsage]]:
    """(model, usage) for every answer an attempt's result reports, fix rounds included."""
    for report in _llm_reports(result):
        usage = report.get("usage")
        model = report.get("model")
        if not isinstance(usage, Mapping) or not isinstance(model, str):
            continue
        cost = report.get("cost_usd")
        yield (
            model,
            LLMUsage(
                prompt_tokens=_count(usage.get("prompt_tokens")),
                completion_tokens=_count(usage.get("completion_tokens")),
                cost_usd=float(cost) if isinstance(cost, int | float) else 0.0,
            ),
        )


def llm_tries(result: Mapping[str, Any] | None) -> Iterator[tuple[str, str]]:
    """(model, outcome) for every request an attempt's result reports, fix rounds included."""
    for report in _llm_reports(result):
        tries = report.get("tries")
        if not isinstance(tries, list):
            continue
        for attempt in tries:
            if isinstance(attempt, Mapping):
                yield str(attempt.get("model") or "unknown"), str(attempt.get("outcome") or "")


def llm_latencies(result: Mapping[str, Any] | None) -> Iterator[tuple[str, float]]:
    """(model, seconds) for every answered request an attempt's result reports."""
    for report in _llm_reports(result):
        tries = report.get("tries")
        if not isinstance(tries, list):
            continue
        for attempt in tries:
            if not isinstance(attempt, Mapping) or attempt.get("outcome") != "ok":
                continue
            latency = attempt.get("latency_s")
            if isinstance(latency, int | float) and not isinstance(latency, bool):
                yield str(attempt.get("model") or "unknown"), float(latency)


def _llm_reports(result: Mapping[str, Any] | None) -> Iterator[Mapping[str, Any]]:
    if not isinstance(result, Mapping):
        return
    yield result
    rounds = result.get("fix_rounds")
    if isinstance(rounds, list):
        yield from (r for r in rounds if isinstance(r, Mapping))


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
