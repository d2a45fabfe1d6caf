"""What the metrics say: counters and gauges collected from the database and the daemon.

``MetricsCollector`` reads the database: queue depth and the daemon's heartbeat row each
time, and every closed attempt once (``StoreStats.closed_attempts``), so its counters are
sums over the database and agree with it across restarts. Gate holds are the one thing the
database does not keep; the daemon counts them in a ``GateHoldCounter``.
It renders them as Prometheus text (``exposition``); ``exporter`` publishes that text.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from swarmd import __version__
from swarmd.daemon.gate import GateHold
from swarmd.daemon.metrics.exposition import TextExposition
from swarmd.models import Clock, ExitReason, TaskState
from swarmd.store import Store
from swarmd.store.stats import AttemptCursor, ClosedAttempt, StoreStats
from swarmd.wire.report import llm_tries, llm_usage

DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Upper bounds (seconds) of the attempt-duration histogram: a command runs in a second,
an llm call in tens of seconds, a coding agent in tens of minutes."""

_PAGE = 500


class GateHoldCounter:
    """How many times the spawn gate closed, by the limit that closed it."""

    def __init__(self, *, disk: bool = False) -> None:
        """Every limit starts at zero; the disk's only where the daemon checks the disk
        (``SWARMD_MIN_FREE_DISK_MB`` above 0)."""
        limits = [hold for hold in GateHold if disk or hold is not GateHold.DISK]
        self._counts: Counter[str] = Counter({hold.value: 0 for hold in limits})

    def record(self, limit: str) -> None:
        self._counts[limit] += 1

    def counts(self) -> dict[str, int]:
        return dict(self._counts)


@dataclass(slots=True)
class AttemptTotals:
    """Counters summed over closed attempts; ``add`` each attempt exactly once."""

    by_reason: Counter[str] = field(
        default_factory=lambda: Counter({reason.value: 0 for reason in ExitReason})
    )
    duration_buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    duration_sum: float = 0.0
    duration_count: int = 0
    llm_requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    tokens: Counter[tuple[str, str]] = field(default_factory=Counter)
    cost_usd: dict[str, float] = field(default_factory=dict)

    def add(self, attempt: ClosedAttempt) -> None:
        self.by_reason[attempt.exit_reason] += 1
        duration = attempt.duration_s
        self.duration_sum += duration
        self.duration_count += 1
        for i, bound in enumerate(DURATION_BUCKETS):
            if duration <= bound:
                self.duration_buckets[i] += 1
        for model, outcome in llm_tries(attempt.result):
            self.llm_requests[model, outcome] += 1
        for model, usage in llm_usage(attempt.result):
            self.tokens[model, "prompt"] += usage.prompt_tokens
            self.tokens[model, "completion"] += usage.completion_tokens
            self.cost_usd[model] = self.cost_usd.get(model, 0.0) + usage.cost_usd


class MetricsCollector:
    """Renders the metrics text from the database (and the gate hold counter)."""

    def __init__(
        self,
        store: Store,
        stats: StoreStats,
        *,
        gate_holds: GateHoldCounter | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._store = store
        self._stats = stats
        self._gate_holds = gate_holds
        self._clock = clock
        self._cursor = AttemptCursor()
        self._totals = AttemptTotals()
        self._lock = asyncio.Lock()

    async def collect(self) -> str:
        """Read what changed since the last call and render every metric."""
        async with self._lock:
            await self._read_new_attempts()
            queue = await self._store.queue_depth()
            beat = await self._store.read_heartbeat()
            return render_metrics(
                queue=queue,
                totals=self._totals,
                heartbeat=beat,
                gate_holds=self._gate_holds.counts() if self._gate_holds else None,
                now=self._clock(),
            )

    async def _read_new_attempts(self) -> None:
        # Pages keep each read transaction short: the supervisor waits on the same connection.
        while True:
            attempts, cursor = await self._stats.closed_attempts(self._cursor, limit=_PAGE)
            for attempt in attempts:
                self._totals.add(attempt)
            self._cursor = cursor
            if len(attempts) < _PAGE:
                return


def render_metrics(
    *,
    queue: Mapping[str, int],
    totals: AttemptTotals,
    heartbeat: Mapping[str, Any] | None,
    gate_holds: Mapping[str, int] | None,
    now: float,
) -> str:
    """The whole exposition, one family after another."""
    text = TextExposition()
    text.family("swarmd_tasks", "gauge", "Tasks in the queue, by state.")
    for state in TaskState:
        text.sample("swarmd_tasks", queue.get(state.value, 0), state=state.value)
    live = (heartbeat or {}).get("status") or {}
    workers: Sequence[Mapping[str, Any]] = live.get("workers") or []
    text.family("swarmd_workers_running", "gauge", "Worker processes running now.")
    text.sample("swarmd_workers_running", len(workers))
    text.family("swarmd_workers_rss_bytes", "gauge", "Resident memory of all workers' trees.")
    text.sample("swarmd_workers_rss_bytes", sum(int(w.get("rss_bytes") or 0) for w in workers))
    add_attempt_families(text, totals)
    add_llm_families(text, totals)
    add_daemon_families(text, heartbeat, live, gate_holds, now=now)
    return text.render()


def add_attempt_families(text: TextExposition, totals: AttemptTotals) -> None:
    text.family("swarmd_attempts_total", "counter", "Attempts that ended, by exit reason.")
    for reason, count in sorted(totals.by_reason.items()):
        text.sample("swarmd_attempts_total", count, exit_reason=reason)
    name = "swarmd_attempt_duration_seconds"
    text.family(name, "histogram", "How long attempts ran, from claim to close.")
    for bound, count in zip(DURATION_BUCKETS, totals.duration_buckets, strict=True):
        # Written as Prometheus' own clients write them ("10.0"), so series keep their
        # identity whichever exporter wrote them.
        text.sample(f"{name}_bucket", count, le=repr(float(bound)))
    text.sample(f"{name}_bucket", totals.duration_count, le="+Inf")
    text.sample(f"{name}_sum", totals.duration_sum)
    text.sample(f"{name}_count", totals.duration_count)


def add_llm_families(text: TextExposition, totals: AttemptTotals) -> None:
    text.family("swarmd_llm_requests_total", "counter", "Requests to models, by model and outcome.")
    for (model, outcome), count in sorted(totals.llm_requests.items()):
        text.sample("swarmd_llm_requests_total", count, model=model, outcome=outcome)
    text.family("swarmd_llm_tokens_total", "counter", "Tokens of answered requests, by kind.")
    for (model, kind), count in sorted(totals.tokens.items()):
        text.sample("swarmd_llm_tokens_total", count, model=model, kind=kind)
    text.family("swarmd_llm_cost_usd_total", "counter", "Cost of answered requests, in USD.")
    for model, cost in sorted(totals.cost_usd.items()):
        text.sample("swarmd_llm_cost_usd_total", cost, model=model)


def add_daemon_families(
    text: TextExposition,
    heartbeat: Mapping[str, Any] | None,
    live: Mapping[str, Any],
    gate_holds: Mapping[str, int] | None,
    *,
    now: float,
) -> None:
    if gate_holds is not None:
        text.family("swarmd_gate_holds_total", "counter", "Times the spawn gate closed, by limit.")
        for limit, count in sorted(gate_holds.items()):
            text.sample("swarmd_gate_holds_total", count, limit=limit)
    gate = live.get("gate")
    if isinstance(gate, Mapping):
        text.family("swarmd_gate_open", "gauge", "1 while the spawn gate lets workers start.")
        text.sample("swarmd_gate_open", 1 if gate.get("allowed", True) else 0)
    models = live.get("models")
    if isinstance(models, Mapping) and models:
        text.family("swarmd_llm_model_cooling", "gauge", "1 while a model is cooling down.")
        for model, status in sorted(models.items()):
            until = status.get("cooling_until") if isinstance(status, Mapping) else None
            text.sample("swarmd_llm_model_cooling", int(bool(until and until > now)), model=model)
    if heartbeat is not None:
        text.family(
            "swarmd_daemon_heartbeat_timestamp_seconds",
            "gauge",
            "When the daemon's loop last wrote its heartbeat (Unix time).",
        )
        text.sample("swarmd_daemon_heartbeat_timestamp_seconds", heartbeat["heartbeat_at"])
        text.family(
            "swarmd_daemon_start_time_seconds", "gauge", "When the daemon started (Unix time)."
        )
        text.sample("swarmd_daemon_start_time_seconds", heartbeat["started_at"])
    text.family("swarmd_build_info", "gauge", "The running swarmd's version.")
    text.sample("swarmd_build_info", 1, version=__version__)
