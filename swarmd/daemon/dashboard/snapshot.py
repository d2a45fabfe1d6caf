"""What the dashboard shows, as one JSON-ready dict: built from the daemon's live status and
its own read-only connection to the queue, with every secret scrubbed.

The live part (workers, the gate, the models' health) is what the supervisor last handed to
its heartbeat (``LiveStatus``): the dashboard never touches a worker's process itself. The
queue, the newest tickets and their tasks come from a store the dashboard opened for itself,
so its reads run on their own thread and never queue behind the supervisor's verbs. The
slow figures (today's usage, latency, throughput) are read again every
``SLOW_REFRESH_SECONDS``; a finished ticket's tasks only when the ticket changes.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swarmd import __version__
from swarmd.logs import Redactor, get_logger
from swarmd.models import Clock, Task, TaskState, Ticket
from swarmd.store import Store
from swarmd.store.stats import StoreStats, start_of_day
from swarmd.wire.report import UsageTotals, llm_latencies, llm_tries

log = get_logger("swarmd.daemon.dashboard")

TICKETS_SHOWN = 12
TASKS_SHOWN = 300
"""A ticket's tasks on the page at most: past that, the graph says how many more there are."""
TEXT_CHARS = 300
SLOW_REFRESH_SECONDS = 15.0
RUNNING_TICKET_REFRESH_SECONDS = 5.0
THROUGHPUT_WINDOWS = {"5m": 300.0, "60m": 3600.0}


class LiveStatus:
    """The supervisor's latest heartbeat status (workers, gate, models) and when it came."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._status: Mapping[str, Any] = {}
        self._at: float | None = None

    def publish(self, status: Mapping[str, Any]) -> None:
        self._status = status
        self._at = self._clock()

    @property
    def status(self) -> Mapping[str, Any]:
        return self._status

    @property
    def at(self) -> float | None:
        return self._at


@dataclass(frozen=True, slots=True)
class DaemonFacts:
    """What does not change while the daemon runs."""

    pid: int
    started_at: float
    home: str
    max_workers: int
    model_chain: tuple[str, ...]
    version: str = __version__


@dataclass(slots=True)
class _CachedTasks:
    key: tuple[Any, ...]
    read_at: float
    tasks: list[Task]


class SnapshotBuilder:
    """Builds the dashboard's snapshot; ``build()`` is called about once a second while a
    page is open, and not at all otherwise."""

    def __init__(
        self,
        store: Store,
        live: LiveStatus,
        facts: DaemonFacts,
        *,
        redactor: Redactor,
        clock: Clock = time.time,
    ) -> None:
        self._store = store
        self._stats = StoreStats(store.database, clock=clock)
        self._live = live
        self._facts = facts
        self._redactor = redactor
        self._clock = clock
        self._tasks: dict[int, _CachedTasks] = {}
        self._slow: dict[str, Any] = {}
        self._slow_at = -math.inf

    async def build(self) -> dict[str, Any]:
        now = self._clock()
        if now - self._slow_at >= SLOW_REFRESH_SECONDS:
            self._slow = await self._slow_figures(now)
            self._slow_at = now
        queue = await self._store.queue_depth()
        tickets = await self._store.list_tickets(limit=TICKETS_SHOWN)
        shown = [await self._ticket(ticket, now) for ticket in tickets]
        listed = {ticket.id for ticket in tickets}
        self._tasks = {id_: cached for id_, cached in self._tasks.items() if id_ in listed}
        live = self._live.status
        snapshot = {
            "time": now,
            "daemon": self._daemon(now),
            "queue": queue,
            "workers": workers_of(live, self._live.at, now),
            "gate": gate_of(live, self._facts.max_workers, len(live.get("workers") or [])),
            "models": models_of(live, self._slow.get("models", {}), self._facts.model_chain, now),
            "today": self._slow.get("today", {}),
            "throughput": self._slow.get("throughput", {}),
            "tickets": shown,
        }
        # Every string the page gets passes the log's redactor: a provider's error message
        # or a task's error that quotes a key shows [REDACTED], as in the log.
        scrubbed: dict[str, Any] = self._redactor.scrub_data(snapshot)
        return scrubbed

    def _daemon(self, now: float) -> dict[str, Any]:
        facts = self._facts
        at = self._live.at
        return {
            "pid": facts.pid,
            "version": facts.version,
            "home": facts.home,
            "host": os.uname().nodename,
            "started_at": facts.started_at,
            "uptime_s": round(now - facts.started_at, 1),
            "heartbeat_age_s": None if at is None else round(now - at, 1),
            "max_workers": facts.max_workers,
            "model_chain": list(facts.model_chain),
        }

    async def _ticket(self, ticket: Ticket, now: float) -> dict[str, Any]:
        tasks = await self._tasks_of(ticket, now)
        return {
            "id": ticket.id,
            "title": clipped(ticket.title),
            "state": ticket.state.value,
            "priority": ticket.priority,
            "created_at": ticket.created_at,
            "finished_at": ticket.finished_at,
            "task_counts": {state: n for state, n in ticket.task_counts.items() if n},
            "tasks_total": sum(ticket.task_counts.values()),
            "tasks": [task_of(task, depth) for task, depth in with_depths(tasks[:TASKS_SHOWN])],
        }

    async def _tasks_of(self, ticket: Ticket, now: float) -> list[Task]:
        """A ticket's tasks, read again when its counts or state changed, and every few
        seconds while it runs (two tasks may swap states between reads)."""
        key = (ticket.state, ticket.finished_at, tuple(sorted(ticket.task_counts.items())))
        cached = self._tasks.get(ticket.id)
        fresh = cached is not None and cached.key == key
        if fresh and cached is not None and ticket.state.is_terminal:
            return cached.tasks
        if fresh and cached is not None and now - cached.read_at < RUNNING_TICKET_REFRESH_SECONDS:
            return cached.tasks
        tasks = await self._store.list_tasks(ticket.id)
        self._tasks[ticket.id] = _CachedTasks(key, now, tasks)
        return tasks

    async def _slow_figures(self, now: float) -> dict[str, Any]:
        results = await self._stats.results_since(start_of_day(now))
        windows = await self._stats.attempt_windows(list(THROUGHPUT_WINDOWS.values()))
        usage = UsageTotals.from_results(results)
        latencies: dict[str, list[float]] = {}
        requests: dict[str, dict[str, int]] = {}
        for result in results:
            for model, seconds in llm_latencies(result):
                latencies.setdefault(model, []).append(seconds)
            for model, outcome in llm_tries(result):
                counts = requests.setdefault(model, {"ok": 0, "failed": 0})
                counts["ok" if outcome == "ok" else "failed"] += 1
        models: dict[str, dict[str, Any]] = {}
        for model in {*usage.by_model, *latencies, *requests}:
            spent = usage.by_model.get(model)
            times = sorted(latencies.get(model, []))
            models[model] = {
                "requests_today": requests.get(model, {"ok": 0, "failed": 0}),
                "latency_p50_s": percentile(times, 0.50),
                "latency_p95_s": percentile(times, 0.95),
                "tokens_today": (spent.prompt_tokens + spent.completion_tokens) if spent else 0,
                "cost_today_usd": round(spent.cost_usd, 6) if spent else 0.0,
            }
        total = usage.total
        return {
            "models": models,
            "today": {
                "prompt_tokens": total.prompt_tokens,
                "completion_tokens": total.completion_tokens,
                "cost_usd": round(total.cost_usd, 6),
            },
            "throughput": {
                label: {
                    "finished": windows[seconds].finished,
                    "succeeded": windows[seconds].succeeded,
                    "failed": windows[seconds].failed,
                    "p50_s": windows[seconds].p50_s,
                    "p95_s": windows[seconds].p95_s,
                    "utilisation": round(windows[seconds].utilisation(self._facts.max_workers), 4),
                }
                for label, seconds in THROUGHPUT_WINDOWS.items()
            },
        }


def workers_of(live: Mapping[str, Any], at: float | None, now: float) -> list[dict[str, Any]]:
    """The running workers, their ages carried forward to ``now`` from the heartbeat's."""
    since = 0.0 if at is None else max(0.0, now - at)
    shown = []
    for worker in live.get("workers") or []:
        if not isinstance(worker, Mapping):
            continue
        shown.append(
            {
                "task": str(worker.get("task", "")),
                "attempt": worker.get("attempt"),
                "agent": str(worker.get("agent", "")),
                "pid": worker.get("pid"),
                "age_s": round(float(worker.get("age_s") or 0.0) + since, 1),
                "rss_bytes": int(worker.get("rss_bytes") or 0),
                "cpu_percent": float(worker.get("cpu_percent") or 0.0),
                "heartbeat_age_s": round(float(worker.get("heartbeat_age_s") or 0.0) + since, 1),
                "stopping": worker.get("stopping"),
            }
        )
    return shown


def gate_of(live: Mapping[str, Any], max_workers: int, running: int) -> dict[str, Any]:
    gate = live.get("gate")
    gate = gate if isinstance(gate, Mapping) else {}
    return {
        "allowed": bool(gate.get("allowed", True)),
        "reason": clipped(gate.get("reason")),
        "running": running,
        "max_workers": max_workers,
    }


def models_of(
    live: Mapping[str, Any],
    today: Mapping[str, Mapping[str, Any]],
    chain: Sequence[str],
    now: float,
) -> list[dict[str, Any]]:
    """Each model: the chain's first, in order, then the others seen today or live."""
    health = live.get("models")
    health = health if isinstance(health, Mapping) else {}
    names = list(dict.fromkeys([*chain, *sorted(health), *sorted(today)]))
    shown = []
    for name in names:
        status = health.get(name)
        status = status if isinstance(status, Mapping) else {}
        until = status.get("cooling_until")
        cooling = isinstance(until, int | float) and until > now
        errors = int(status.get("errors_last_minute") or 0)
        shown.append(
            {
                "model": name,
                "in_chain": name in chain,
                "health": "cooling" if cooling else "errors" if errors else "ok",
                "requests_last_minute": int(status.get("requests_last_minute") or 0),
                "errors_last_minute": errors,
                "cooling_until": until if cooling else None,
                "cooling_reason": clipped(status.get("cooling_reason")) if cooling else None,
                "last_error": clipped(status.get("last_error")),
                "last_error_at": status.get("last_error_at"),
                **dict(today.get(name) or {}),
            }
        )
    return shown


def task_of(task: Task, depth: int) -> dict[str, Any]:
    """A task as the graph draws it: never its prompt or command, which may hold anything."""
    return {
        "name": task.name,
        "state": task.state.value,
        "agent": task.agent,
        "needs": list(task.needs),
        "depth": depth,
        "failures": task.failures,
        "max_attempts": task.max_attempts,
        "retry_at": task.retry_at if task.state is TaskState.FAILED else None,
        "error": clipped(task.last_error),
    }


def with_depths(tasks: Iterable[Task]) -> list[tuple[Task, int]]:
    """Each task with its column in the graph: one past its deepest need's. Tasks come in
    dependency order, so a need is always seen before the task that needs it."""
    depths: dict[str, int] = {}
    placed = []
    for task in tasks:
        depth = 1 + max((depths.get(need, -1) for need in task.needs), default=-1)
        depths[task.name] = depth
        placed.append((task, depth))
    return placed


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return round(sorted_values[index], 3)


def clipped(value: object, limit: int = TEXT_CHARS) -> str | None:
    """``value`` as text of at most ``limit`` characters, or None."""
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
