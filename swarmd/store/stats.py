"""Read-only statistics over the queue: attempt windows, usage, and closed attempts in order.

``StoreStats`` only reads, through the ``Backend``'s read transactions. It answers two kinds
of question:

- recent windows, for ``swarmd status``: throughput, latency percentiles and busy
  worker-seconds over the last N seconds, and the attempts' reports since a moment;
- every closed attempt exactly once, for counters that must agree with the database across
  restarts (``swarmd.daemon.metrics``): ``closed_attempts`` pages through them with a cursor.

Reports are returned as the workers wrote them; ``swarmd.wire.report`` reads them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from swarmd.models import Clock, ExitReason
from swarmd.store.backend import Backend, Row, Transaction

# Attempts that ended inside the widest window, and those still open (their busy time runs
# until now). A full scan of ``attempts`` until an index on ``ended_at`` exists.
ATTEMPTS_SINCE = """
    SELECT started_at, ended_at, exit_reason FROM attempts WHERE ended_at >= ?
    UNION ALL
    SELECT started_at, NULL, NULL FROM attempts WHERE ended_at IS NULL
"""

RESULTS_ENDED_SINCE = """
    SELECT result FROM attempts WHERE ended_at >= ? AND result IS NOT NULL
"""

# Closed attempts from ``id >= ?`` on, less those already seen, in id order.
CLOSED_ATTEMPTS_FROM = """
    SELECT id, started_at, ended_at, exit_reason, result FROM attempts
    WHERE id >= ? AND ended_at IS NOT NULL AND id NOT IN (SELECT value FROM json_each(?))
    ORDER BY id LIMIT ?
"""

FIRST_OPEN_ATTEMPT_FROM = "SELECT MIN(id) FROM attempts WHERE ended_at IS NULL AND id >= ?"

LAST_ATTEMPT_ID = "SELECT COALESCE(MAX(id), 0) FROM attempts"

# Interrupted and cancelled attempts were cut short by someone else: their durations say
# nothing about how long the work takes.
_CUT_SHORT = frozenset({ExitReason.INTERRUPTED.value, ExitReason.CANCELLED.value})


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Attempts over the last ``window_s`` seconds."""

    window_s: float
    finished: int  # attempts that ended in the window, for any reason
    succeeded: int
    failed: int  # ended with a failure (error, exit code, signal, timeout, memory, hung)
    p50_s: float | None  # duration percentiles of the attempts that ran to a verdict
    p95_s: float | None
    busy_worker_s: float  # worker-seconds spent on attempts inside the window, open ones too

    @property
    def per_minute(self) -> float:
        return self.finished * 60.0 / self.window_s

    def utilisation(self, max_workers: int) -> float:
        """Busy worker-seconds over the available ones (``max_workers`` x the window)."""
        return self.busy_worker_s / (max_workers * self.window_s)


@dataclass(frozen=True, slots=True)
class ClosedAttempt:
    """The facts of one closed attempt that counters are made of."""

    id: int
    started_at: float
    ended_at: float
    exit_reason: str
    result: dict[str, Any] | None

    @property
    def duration_s(self) -> float:
        return max(0.0, self.ended_at - self.started_at)


@dataclass(frozen=True, slots=True)
class AttemptCursor:
    """How far ``closed_attempts`` has read: every attempt below ``covered_below`` was closed
    and returned, and so were the ids in ``seen`` (closed above an attempt still open)."""

    covered_below: int = 0
    seen: frozenset[int] = frozenset()


class StoreStats:
    """Read-only statistics over one open ``Backend``."""

    def __init__(self, database: Backend, *, clock: Clock = time.time) -> None:
        self._db = database
        self._clock = clock

    async def attempt_windows(self, windows: Sequence[float]) -> dict[float, WindowStats]:
        """``WindowStats`` for each window length (seconds, ending now), from one read."""
        now = self._clock()
        widest = max(windows)
        rows = await self._db.read(lambda txn: txn.fetch(ATTEMPTS_SINCE, (now - widest,)))
        spans = [(row[0], row[1], row[2]) for row in rows]
        return {window: summarise_window(spans, now=now, window=window) for window in windows}

    async def results_since(self, since: float) -> list[dict[str, Any]]:
        """The reports of the attempts that ended at or after ``since`` and left one."""
        rows = await self._db.read(lambda txn: txn.fetch(RESULTS_ENDED_SINCE, (since,)))
        return [result for row in rows if (result := _load_result(row[0])) is not None]

    async def closed_attempts(
        self, cursor: AttemptCursor, *, limit: int = 500
    ) -> tuple[list[ClosedAttempt], AttemptCursor]:
        """The next closed attempts not yet returned for ``cursor``, and the cursor after them.

        Attempt ids grow in commit order (a claim picks ``MAX(id) + 1`` inside its write
        transaction), and a closed attempt never changes again; so the cursor needs only the
        lowest id that may still be open and the few closed ids above it. Call again while
        the list comes back full.
        """

        def read(txn: Transaction) -> tuple[list[Row], Row | None, Row | None]:
            rows = txn.fetch(
                CLOSED_ATTEMPTS_FROM,
                (cursor.covered_below, json.dumps(sorted(cursor.seen)), limit),
            )
            first_open = txn.fetch_one(FIRST_OPEN_ATTEMPT_FROM, (cursor.covered_below,))
            return rows, first_open, txn.fetch_one(LAST_ATTEMPT_ID)

        rows, first_open_row, last_row = await self._db.read(read, snapshot=True)
        attempts = [
            ClosedAttempt(
                id=row["id"],
                started_at=row["started_at"],
                ended_at=row["ended_at"],
                exit_reason=row["exit_reason"] or "",
                result=_load_result(row["result"]),
            )
            for row in rows
        ]
        first_open = first_open_row[0] if first_open_row is not None else None
        # With a full page, only the ids up to the page's last one are known to be complete.
        read_through = (
            attempts[-1].id if len(attempts) == limit else int(last_row[0] if last_row else 0)
        )
        covered = read_through + 1 if first_open is None else min(first_open, read_through + 1)
        covered = max(covered, cursor.covered_below)
        seen = frozenset(i for i in (*cursor.seen, *(a.id for a in attempts)) if i >= covered)
        return attempts, AttemptCursor(covered, seen)


def summarise_window(
    spans: Sequence[tuple[float, float | None, str | None]], *, now: float, window: float
) -> WindowStats:
    """``WindowStats`` from (started_at, ended_at or None while open, exit_reason) rows."""
    start = now - window
    finished = succeeded = failed = 0
    durations: list[float] = []
    busy = 0.0
    for started_at, ended_at, reason in spans:
        end = now if ended_at is None else min(ended_at, now)
        if end < start:
            continue
        busy += max(0.0, end - max(started_at, start))
        if ended_at is None:
            continue
        finished += 1
        if reason == ExitReason.OK.value:
            succeeded += 1
        elif reason not in _CUT_SHORT:
            failed += 1
        if reason not in _CUT_SHORT:
            durations.append(max(0.0, ended_at - started_at))
    durations.sort()
    return WindowStats(
        window_s=window,
        finished=finished,
        succeeded=succeeded,
        failed=failed,
        p50_s=percentile(durations, 0.50),
        p95_s=percentile(durations, 0.95),
        busy_worker_s=busy,
    )


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of already sorted values; None when there are none."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def start_of_day(now: float) -> float:
    """Local midnight before ``now``."""
    local = time.localtime(now)
    return time.mktime((local.tm_year, local.tm_mon, local.tm_mday, 0, 0, 0, 0, 0, -1))


def _load_result(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
