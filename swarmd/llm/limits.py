"""The daemon's shared LLM limits: a global rate limiter and the per-model cool-down table.

Pure bookkeeping: no I/O, no sleeping, and ``now`` is always a parameter, so both are tested
by simulation. ``swarmd.llm.permits.LocalBroker`` puts them behind the broker protocol.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypedDict

from swarmd.errors import ConfigError
from swarmd.llm.types import Outcome

WINDOW_S = 60.0
GUARD_S = 1.0


class RateLimiter:
    """A GCRA (virtual-scheduling leaky bucket) per key: requests spread evenly, never more
    than ``rpm`` in any window of ``window`` seconds.

    The emission interval is ``(window + guard) / (rpm - burst + 1)``: with ``burst`` requests
    allowed at once, any half-open window of ``window`` seconds then holds at most
    ``burst - 1 + ceil(window / interval) <= rpm`` grants. The ``guard`` absorbs the jitter
    between a grant and the request reaching the server (and float rounding), so the
    provider's own windows stay under the limit too.

    Keys are provider names; ``overrides`` sets a different rpm for some of them.
    """

    def __init__(
        self,
        rpm: int,
        *,
        burst: int = 1,
        window: float = WINDOW_S,
        guard: float = GUARD_S,
        overrides: Mapping[str, int] | None = None,
    ) -> None:
        self.window = window
        self.guard = guard
        self.burst = burst
        self._rpm = rpm
        self._overrides = dict(overrides or {})
        for limit in (rpm, *self._overrides.values()):
            if limit < 1 or not 1 <= burst <= limit:
                raise ConfigError(f"a rate limit of {limit} rpm cannot allow bursts of {burst}")
        self._theoretical_arrival: dict[str, float] = {}

    def rpm_for(self, key: str) -> int:
        return self._overrides.get(key, self._rpm)

    def interval(self, key: str) -> float:
        """Seconds between two grants for ``key`` once its burst is spent."""
        return (self.window + self.guard) / (self.rpm_for(key) - self.burst + 1)

    def delay_for(self, key: str, now: float) -> float:
        """How long a request made ``now`` would wait; nothing is reserved."""
        interval = self.interval(key)
        arrival = self._theoretical_arrival.get(key, now)
        return max(0.0, arrival - (self.burst - 1) * interval - now)

    def reserve(self, key: str, now: float) -> float:
        """Reserve the next slot for ``key`` and return the delay until it is granted."""
        delay = self.delay_for(key, now)
        arrival = max(self._theoretical_arrival.get(key, now), now)
        self._theoretical_arrival[key] = arrival + self.interval(key)
        return delay


class ModelStatus(TypedDict):
    """One model's line in ``swarmd status``."""

    requests_last_minute: int
    errors_last_minute: int
    cooling_until: float | None
    cooling_reason: str | None
    last_error: str | None
    last_error_at: float | None


@dataclass
class _ModelRecord:
    requests: deque[float] = field(default_factory=deque)
    errors: deque[float] = field(default_factory=deque)
    cooling_until: float | None = None
    cooling_reason: str | None = None
    last_error: str | None = None
    last_error_at: float | None = None


class CooldownTable:
    """Which models are cooling down, and what each answered lately. Times are wall-clock."""

    def __init__(self, *, window: float = WINDOW_S) -> None:
        self.window = window
        self._models: dict[str, _ModelRecord] = {}

    def cool(self, model: str, until: float, reason: str | None = None) -> None:
        """Skip ``model`` until ``until``. A shorter cool-down never cuts a longer one short."""
        record = self._record(model)
        if record.cooling_until is None or until > record.cooling_until:
            record.cooling_until = until
            record.cooling_reason = reason

    def cooling_until(self, model: str, now: float) -> float | None:
        """When ``model`` may be asked again, or ``None`` when it may be asked now."""
        record = self._models.get(model)
        if record is None or record.cooling_until is None or record.cooling_until <= now:
            return None
        return record.cooling_until

    def cooling_reason(self, model: str) -> str | None:
        record = self._models.get(model)
        return record.cooling_reason if record else None

    def record(self, model: str, outcome: Outcome, now: float) -> None:
        """Count one request's outcome, and apply the cool-down it asks for."""
        record = self._record(model)
        record.requests.append(now)
        if not outcome.ok:
            record.errors.append(now)
            record.last_error = outcome.error
            record.last_error_at = now
        if outcome.cool_until is not None:
            self.cool(model, outcome.cool_until, outcome.reason or outcome.error)
        self._prune(record, now)

    def snapshot(self, now: float) -> dict[str, ModelStatus]:
        """Every model seen so far, as ``swarmd status`` shows it."""
        shown: dict[str, ModelStatus] = {}
        for model, record in sorted(self._models.items()):
            self._prune(record, now)
            cooling = self.cooling_until(model, now)
            shown[model] = ModelStatus(
                requests_last_minute=len(record.requests),
                errors_last_minute=len(record.errors),
                cooling_until=cooling,
                cooling_reason=record.cooling_reason if cooling is not None else None,
                last_error=record.last_error,
                last_error_at=record.last_error_at,
            )
        return shown

    def _record(self, model: str) -> _ModelRecord:
        return self._models.setdefault(model, _ModelRecord())

    def _prune(self, record: _ModelRecord, now: float) -> None:
        horizon = now - self.window
        for times in (record.requests, record.errors):
            while times and times[0] <= horizon:
                times.popleft()
