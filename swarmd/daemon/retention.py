"""Retention: remove what finished tickets no longer need, so the disk never fills.

Each kind is kept for its own number of days after its ticket finished (0: for ever):

    workspaces     work/<ticket>/                       SWARMD_RETENTION_WORKSPACES_DAYS (7)
    attempt_logs   logs/attempts/<ticket>/              SWARMD_RETENTION_ATTEMPT_LOGS_DAYS (30)
    archives       outputs/<ticket>/<task>.tar.gz       SWARMD_RETENTION_ARCHIVES_DAYS (30)
    deliveries     outputs/<ticket>/delivery.tar.gz     SWARMD_RETENTION_DELIVERIES_DAYS (90),
                                                        counted from when it was written
    tickets        the ticket's rows and events         SWARMD_RETENTION_TICKETS_DAYS (365)

What is never removed: anything of a ticket that is not finished and delivered (a running
ticket, a queued one, one a retry reopened, one whose delivery is still owed), and anything
under ``worktrees/``: a repository ticket's worktrees go only through the git layer's
``remove_worktree`` when the delivery is made (it refuses unmerged work); those it kept (a
conflict, locked for a person) stay, and so does their ticket's row.

A ticket's row goes with every file of its ticket; a kind kept for ever keeps the row too.
Until the row goes, ``swarmd show`` says which kinds were pruned.

The daemon runs ``Pruner.prune`` once a day as the named side task ``retention``
(``swarmd.daemon.serve.pruning``; file work on a thread, never on the loop);
``swarmd prune`` runs it once, or shows what it would do.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import shutil
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from swarmd.config import Settings
from swarmd.errors import SwarmdError
from swarmd.home import HomeLayout
from swarmd.logs import get_logger
from swarmd.models import Clock
from swarmd.store import Store
from swarmd.store.retention import FinishedTicket

if TYPE_CHECKING:  # ``swarmd prune`` imports this module and needs no alerts
    from swarmd.daemon.alerts import AlertWatch

log = get_logger("swarmd.daemon.retention")

DAY_SECONDS = 24 * 3600.0
FIRST_RUN_DELAY_SECONDS = 60.0
"""The daemon's first pass waits this long, so a start-up is never slowed by it."""


class Kind(enum.StrEnum):
    WORKSPACES = "workspaces"
    ATTEMPT_LOGS = "attempt_logs"
    ARCHIVES = "archives"
    DELIVERIES = "deliveries"


FILE_KINDS = tuple(Kind)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Seconds each kind is kept after its ticket finished; None keeps it for ever."""

    workspaces: float | None
    attempt_logs: float | None
    archives: float | None
    deliveries: float | None
    tickets: float | None

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        def seconds(days: int) -> float | None:
            return days * DAY_SECONDS if days > 0 else None

        return cls(
            workspaces=seconds(settings.retention_workspaces_days),
            attempt_logs=seconds(settings.retention_attempt_logs_days),
            archives=seconds(settings.retention_archives_days),
            deliveries=seconds(settings.retention_deliveries_days),
            tickets=seconds(settings.retention_tickets_days),
        )

    def files_older_than(self, seconds: float) -> RetentionPolicy:
        """``swarmd prune --older-than``: every kind of file past ``seconds``; rows keep
        their own limit."""
        return replace(
            self, workspaces=seconds, attempt_logs=seconds, archives=seconds, deliveries=seconds
        )

    def limit(self, kind: Kind) -> float | None:
        limit: float | None = getattr(self, kind.value)
        return limit

    @property
    def shortest(self) -> float | None:
        limits = [self.limit(kind) for kind in FILE_KINDS] + [self.tickets]
        return min((limit for limit in limits if limit is not None), default=None)


@dataclass(frozen=True, slots=True)
class Removal:
    """One path removed (or, in a dry run, that would be), with the bytes it held."""

    ticket_id: int
    kind: str
    path: Path
    bytes: int
    error: str | None = None  # why it could not be removed


@dataclass(slots=True)
class PruneReport:
    dry_run: bool
    removals: list[Removal] = field(default_factory=list)
    tickets_removed: list[int] = field(default_factory=list)
    kept_worktrees: list[Path] = field(default_factory=list)
    database_bytes: int = 0

    @property
    def freed_bytes(self) -> int:
        files = sum(removal.bytes for removal in self.removals if removal.error is None)
        return files + self.database_bytes

    @property
    def failures(self) -> list[Removal]:
        return [removal for removal in self.removals if removal.error is not None]


class Pruner:
    """Applies a ``RetentionPolicy`` to one home, its store and its files."""

    def __init__(
        self,
        store: Store,
        layout: HomeLayout,
        policy: RetentionPolicy,
        *,
        clock: Clock = time.time,
    ) -> None:
        self._store = store
        self._layout = layout
        self._policy = policy
        self._clock = clock

    async def prune(self, *, dry_run: bool = False) -> PruneReport:
        """Remove (or, with ``dry_run``, list) everything that is due now."""
        report = PruneReport(dry_run=dry_run)
        shortest = self._policy.shortest
        if shortest is None:
            return report
        now = self._clock()
        rows_due: list[int] = []
        for ticket in await self._store.finished_tickets(finished_before=now - shortest):
            row_due = self._row_due(ticket, now)
            if row_due and os.path.lexists(self._layout.ticket_worktrees(ticket.id)):
                report.kept_worktrees.append(self._layout.ticket_worktrees(ticket.id))
                row_due = False
            kinds = self._kinds_due(ticket, now, everything=row_due)
            if kinds:
                removals = await asyncio.to_thread(self._remove_files, ticket.id, kinds, dry_run)
                report.removals.extend(removals)
                if not dry_run and not row_due:
                    await self._store.record_pruned(ticket.id, kinds, at=now)
            if row_due:
                rows_due.append(ticket.id)
        if rows_due and self._policy.tickets is not None:
            if dry_run:
                report.tickets_removed = rows_due
            else:
                report.tickets_removed = await self._store.remove_finished_tickets(
                    rows_due, finished_before=now - self._policy.tickets
                )
                report.database_bytes = await self._store.reclaim_space()
        return report

    def _row_due(self, ticket: FinishedTicket, now: float) -> bool:
        limit = self._policy.tickets
        if limit is None or now - ticket.finished_at < limit:
            return False
        # A kind kept for ever keeps its ticket's row, so its files keep an owner.
        return all(self._policy.limit(kind) is not None for kind in FILE_KINDS)

    def _kinds_due(self, ticket: FinishedTicket, now: float, *, everything: bool) -> list[Kind]:
        if everything:
            return list(FILE_KINDS)
        due = []
        for kind in FILE_KINDS:
            limit = self._policy.limit(kind)
            since = ticket.delivered_at if kind is Kind.DELIVERIES else ticket.finished_at
            if limit is not None and now - since >= limit and kind.value not in ticket.pruned:
                due.append(kind)
        return due

    # -- the files, on a thread -------------------------------------------------------------

    def _remove_files(self, ticket_id: int, kinds: list[Kind], dry_run: bool) -> list[Removal]:
        removals = []
        for kind in kinds:
            for path in self._paths(ticket_id, kind):
                size = disk_bytes(path)
                error = None if dry_run else remove_path(path)
                removals.append(Removal(ticket_id, kind.value, path, size, error))
        if not dry_run:
            with contextlib.suppress(OSError):  # not empty (a kind kept longer), or gone
                self._layout.ticket_outputs(ticket_id).rmdir()
        return removals

    def _paths(self, ticket_id: int, kind: Kind) -> list[Path]:
        layout = self._layout
        if kind is Kind.WORKSPACES:
            paths = [layout.ticket_workspaces(ticket_id)]
        elif kind is Kind.ATTEMPT_LOGS:
            paths = [layout.ticket_attempt_logs(ticket_id)]
        elif kind is Kind.DELIVERIES:
            paths = [layout.delivery_archive(ticket_id)]
        else:
            delivery = layout.delivery_archive(ticket_id)
            try:
                entries = sorted(os.scandir(layout.ticket_outputs(ticket_id)), key=lambda e: e.name)
            except OSError:
                return []
            paths = [Path(entry.path) for entry in entries if entry.name != delivery.name]
        return [path for path in paths if os.path.lexists(path)]


def disk_bytes(path: Path) -> int:
    """The bytes ``path`` takes on disk (``du``'s count), without following symlinks."""
    total = 0
    stack = [str(path)]
    while stack:
        current = stack.pop()
        try:
            info = os.lstat(current)
        except OSError:
            continue
        total += info.st_blocks * 512
        if stat.S_ISDIR(info.st_mode):
            try:
                stack.extend(entry.path for entry in os.scandir(current))
            except OSError:
                continue
    return total


def remove_path(path: Path) -> str | None:
    """Remove a file, a symlink (never what it points at) or a whole tree; why not, if not."""
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


# -- the daemon's side task ---------------------------------------------------------------


async def run_retention(
    pruner: Pruner,
    *,
    alerts: AlertWatch | None = None,
    interval: float = DAY_SECONDS,
    first_delay: float = FIRST_RUN_DELAY_SECONDS,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Prune after ``first_delay``, then every ``interval``, until cancelled. A pass that
    fails on the database or the disk is logged and tried again at the next one. Each
    pass that freed space, failed, or left paths it could not remove is alerted."""
    await sleep(first_delay)
    while True:
        try:
            report = await pruner.prune()
        except (SwarmdError, OSError) as exc:
            log.error("retention_failed", error=str(exc), detail="tried again in a day")
            if alerts is not None:
                alerts.retention_failed(str(exc))
        else:
            log_report(report)
            if alerts is not None:
                alert_report(alerts, report)
        await sleep(interval)


def alert_report(alerts: AlertWatch, report: PruneReport) -> None:
    removed = len(report.removals) - len(report.failures)
    if removed or report.tickets_removed:
        alerts.retention_pruned(
            freed_bytes=report.freed_bytes,
            removed=removed,
            tickets_removed=len(report.tickets_removed),
        )
    if report.failures:
        alerts.retention_failed(
            not_removed=[(str(f.path), f.error or "unknown") for f in report.failures]
        )


def log_report(report: PruneReport) -> None:
    for failure in report.failures:
        log.warning(
            "retention_not_removed", path=str(failure.path), error=failure.error, kind=failure.kind
        )
    if report.removals or report.tickets_removed:
        log.info(
            "retention_pruned",
            removed=len(report.removals) - len(report.failures),
            tickets_removed=len(report.tickets_removed),
            freed_bytes=report.freed_bytes,
        )
