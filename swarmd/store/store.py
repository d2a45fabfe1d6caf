"""The queue's attempt verbs: claim, record the spawn, complete, fail, interrupt, release.

``Store`` stacks them on ``TicketWrites`` (submit, add tasks, cancel, retry) and
``StoreReads`` (every read), so one object speaks the whole queue.

Every verb is one short transaction over plain models. The store never spawns, sleeps, or
calls an LLM; time comes from the injected clock and jitter from the injected ``rng``.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from swarmd.addresses import is_database_url
from swarmd.errors import StaleAttemptError
from swarmd.models import (
    Attempt,
    ClaimedTask,
    Clock,
    ExitReason,
    Task,
    TaskOutcome,
    TaskSpec,
    TaskState,
    TicketState,
)
from swarmd.store import queries
from swarmd.store.backend import Backend, LeaseHolder, SharedRates, Transaction
from swarmd.store.backoff import retry_delay
from swarmd.store.database import Database
from swarmd.store.repo_records import RepoRecords
from swarmd.store.retention import RetentionRecords
from swarmd.store.rows import attempt_id_of, dump_json, new_token, task_from_row
from swarmd.store.ticket_writes import TicketWrites
from swarmd.store.transitions import (
    move_task,
    move_tasks,
    release_dependents,
    settle_ticket,
    skip_downstream,
)


@dataclasses.dataclass(frozen=True, slots=True)
class _CurrentAttempt:
    """An open attempt that passed the fencing check, with what closing it needs to know."""

    attempt_id: int
    task: Task
    has_dependents: bool
    ticket_busy: bool  # the ticket has unfinished tasks besides this one


class Store(TicketWrites, RepoRecords, RetentionRecords):
    """The durable queue of tickets and tasks: a SQLite file, or a fleet's PostgreSQL
    database (``open`` chooses by the location)."""

    def __init__(
        self,
        database: Backend,
        *,
        clock: Clock = time.time,
        rng: random.Random | None = None,
        backoff_base: float = 5.0,
        backoff_max: float = 300.0,
    ) -> None:
        super().__init__(database)
        self._clock = clock
        self._rng = rng or random.Random()
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max

    @classmethod
    async def open(
        cls,
        location: Path | str,
        *,
        clock: Clock = time.time,
        rng: random.Random | None = None,
        backoff_base: float = 5.0,
        backoff_max: float = 300.0,
        lease: LeaseHolder | None = None,
    ) -> Store:
        """Open the database at ``location`` and migrate its schema: a SQLite file's path
        (its directory is created), or a ``postgresql://`` URL. ``lease`` names the daemon
        that will claim from a shared database (see ``swarmd.store.postgres``)."""
        database: Backend
        if isinstance(location, str) and is_database_url(location):
            from swarmd.store.postgres.connection import PostgresDatabase

            database = await PostgresDatabase.connect(location, lease=lease)
        else:
            database = await Database.connect(Path(location))
        return cls(
            database, clock=clock, rng=rng, backoff_base=backoff_base, backoff_max=backoff_max
        )

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- claiming and closing attempts ------------------------------------------------------

    async def claim_ready_task(self, *, ticket_id: int | None = None) -> ClaimedTask | None:
        """Take the ready task with the highest priority, then the oldest, and open an attempt.

        With ``ticket_id``, only that ticket's tasks are considered.
        """
        now = self._clock()
        where: str = queries.WHERE_NEXT_READY
        params: tuple[int, ...] = ()
        if ticket_id is not None:
            where, params = queries.WHERE_NEXT_READY_OF_TICKET, (ticket_id,)

        def claim(txn: Transaction) -> ClaimedTask | None:
            moved = move_tasks(
                txn,
                TaskState.RUNNING,
                from_states=(TaskState.READY,),
                where=where,
                params=params,
                sets=queries.CLAIM_SETS,
                set_params=(now,),
                returning=queries.CLAIM_RETURNING,
                kind="task_claimed",
                at=now,
            )
            if not moved:
                return None
            row = moved[0]
            attempt = Attempt(
                id=row["current_attempt_id"],
                task_id=row["id"],
                number=row["attempt_number"],
                token=new_token(row["current_attempt_id"]),
                started_at=now,
                ended_at=None,
                pid=None,
                pid_create_time=None,
                exit_reason=None,
                error=None,
                result=None,
            )
            txn.execute(
                queries.INSERT_ATTEMPT,
                (attempt.id, attempt.task_id, attempt.number, attempt.token, now),
            )
            txn.take_lease(attempt.id)
            if row["ticket_state"] == TicketState.QUEUED.value:
                txn.execute(queries.START_TICKET, (now, row["ticket_id"]))
                txn.add_event(now, "ticket_started", ticket_id=row["ticket_id"])
            return ClaimedTask(task=task_from_row(row), attempt=attempt)

        return await self._db.write(claim, inline=True)

    async def record_spawn(self, token: str, *, pid: int, pid_create_time: float) -> None:
        """Remember which process runs an attempt, so a restart can find and kill it."""
        updated = await self._db.write_one(
            queries.RECORD_SPAWN, (pid, pid_create_time, attempt_id_of(token), token)
        )
        if not updated:
            raise StaleAttemptError(f"attempt {token} is not open")

    async def complete_attempt(
        self,
        token: str,
        *,
        result: dict[str, Any] | None = None,
        new_tasks: Sequence[TaskSpec] = (),
        default_max_attempts: int = 3,
    ) -> TaskOutcome:
        """Close an attempt as a success: the task succeeds and its dependents may become ready.

        ``new_tasks`` (a planner's graph) join the ticket in the same transaction, their
        roots needing this task, so they become ready together with its other dependents;
        an invalid graph raises ``TicketError`` and nothing is written. If the task was
        cancelled while the attempt ran, only the attempt is closed.
        """
        now = self._clock()

        def complete(txn: Transaction) -> TaskOutcome:
            current = self._fence(txn, token)
            task = current.task
            ready: list[int] = []
            ticket_state = None
            if task.state is TaskState.RUNNING:
                if new_tasks:
                    ticket = txn.fetch_one(queries.TICKET_FOR_UPDATE, (task.ticket_id,))
                    assert ticket is not None  # a running task's ticket exists
                    self._add_tasks(
                        txn,
                        ticket,
                        new_tasks,
                        after=task.name,
                        default_max_attempts=default_max_attempts,
                        now=now,
                    )
                if current.has_dependents or new_tasks:
                    ready = release_dependents(txn, task.id, at=now)
                task = move_task(
                    txn,
                    task,
                    TaskState.SUCCEEDED,
                    kind="task_succeeded",
                    at=now,
                    finished_at=now,
                    retry_at=None,
                    last_error=None,
                )
            self._close_attempt(txn, current, at=now, reason=ExitReason.OK, result=result)
            if task.state is TaskState.SUCCEEDED and not (current.ticket_busy or new_tasks):
                ticket_state = settle_ticket(txn, task.ticket_id, at=now)
            return TaskOutcome(task=task, newly_ready=tuple(ready), ticket_state=ticket_state)

        # A planner's graph may be large: it goes to the store's thread.
        return await self._db.write(complete, inline=not new_tasks)

    async def fail_attempt(
        self,
        token: str,
        *,
        reason: ExitReason,
        error: str,
        result: dict[str, Any] | None = None,
        retryable: bool = True,
    ) -> TaskOutcome:
        """Close an attempt as a failure: retry after a backoff, or die and skip dependents.

        If the task was cancelled while the attempt ran, only the attempt is closed.
        """
        now = self._clock()

        def fail(txn: Transaction) -> TaskOutcome:
            current = self._fence(txn, token)
            self._close_attempt(txn, current, at=now, reason=reason, error=error, result=result)
            task = current.task
            if task.state is not TaskState.RUNNING:
                return TaskOutcome(task=task)
            failures = task.failures + 1
            detail = {"reason": reason.value, "error": error, "failures": failures}
            if retryable and failures < task.max_attempts:
                delay = retry_delay(
                    failures, base=self._backoff_base, cap=self._backoff_max, rng=self._rng
                )
                task = move_task(
                    txn,
                    task,
                    TaskState.FAILED,
                    kind="task_failed",
                    at=now,
                    detail={**detail, "retry_at": now + delay},
                    failures=failures,
                    retry_at=now + delay,
                    last_error=error,
                )
                return TaskOutcome(task=task)
            task = move_task(
                txn,
                task,
                TaskState.DEAD,
                kind="task_dead",
                at=now,
                detail=detail,
                failures=failures,
                retry_at=None,
                finished_at=now,
                last_error=error,
            )
            skipped = skip_downstream(
                txn, [task.id], reason=f"needs {task.ref}, which died", at=now
            )
            ticket_state = settle_ticket(txn, task.ticket_id, at=now)
            return TaskOutcome(task=task, skipped=tuple(skipped), ticket_state=ticket_state)

        return await self._db.write(fail, inline=True)

    async def interrupt_attempt(
        self, token: str, *, reason: ExitReason = ExitReason.INTERRUPTED, error: str = ""
    ) -> TaskOutcome:
        """Close an attempt cut short by shutdown or a crash: the task is ready again and no
        failure is counted. A task cancelled meanwhile stays cancelled."""
        now = self._clock()

        def interrupt(txn: Transaction) -> TaskOutcome:
            current = self._fence(txn, token)
            self._close_attempt(txn, current, at=now, reason=reason, error=error or None)
            task = current.task
            if task.state is TaskState.RUNNING:
                task = move_task(
                    txn,
                    task,
                    TaskState.READY,
                    kind="task_interrupted",
                    at=now,
                    detail={"reason": reason.value, "error": error},
                    retry_at=None,
                )
            return TaskOutcome(task=task)

        return await self._db.write(interrupt, inline=True)

    @staticmethod
    def _fence(txn: Transaction, token: str) -> _CurrentAttempt:
        """The open, current attempt with this token and its task; StaleAttemptError if none.

        The ticket's row is locked first, then the attempt's, so that the ticket's other
        tasks, and a lease reaper, wait for this verb (the backend's hooks)."""
        attempt_id = attempt_id_of(token)
        if attempt_id is not None:
            txn.lock_ticket_of_attempt(attempt_id)
        row = txn.fetch_one(queries.CURRENT_ATTEMPT_BY_TOKEN, (attempt_id, token))
        if row is None:
            raise StaleAttemptError(
                f"attempt {token} is not the open attempt of any task; its result is refused"
            )
        if not txn.hold_attempt(row["attempt_id"]):
            raise StaleAttemptError(f"attempt {token} lost its lease; its result is refused")
        return _CurrentAttempt(
            attempt_id=row["attempt_id"],
            task=task_from_row(row),
            has_dependents=bool(row["has_dependents"]),
            ticket_busy=bool(row["ticket_busy"]),
        )

    @staticmethod
    def _close_attempt(
        txn: Transaction,
        current: _CurrentAttempt,
        *,
        at: float,
        reason: ExitReason,
        error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        txn.execute(
            queries.CLOSE_ATTEMPT,
            (at, reason.value, error, dump_json(result), current.attempt_id),
        )

    async def release_due_retries(self) -> list[int]:
        """Make every failed task whose backoff is over ready again; returns their ids."""
        now = self._clock()

        def release(txn: Transaction) -> list[int]:
            moved = move_tasks(
                txn,
                TaskState.READY,
                from_states=(TaskState.FAILED,),
                where=queries.WHERE_RETRY_DUE,
                params=(now,),
                sets=", retry_at = NULL",
                kind="task_ready",
                at=now,
            )
            return [row["id"] for row in moved]

        # After a provider outage, many tasks may come due at once: the store's thread.
        return await self._db.write(release)

    # -- events and the daemon row ----------------------------------------------------------

    async def record_event(
        self,
        kind: str,
        *,
        ticket_id: int | None = None,
        task_id: int | None = None,
        **detail: Any,
    ) -> None:
        """Append an event that is not a state change (an archive written, a gate closed)."""
        await self._db.write_one(
            queries.INSERT_EVENT, (self._clock(), ticket_id, task_id, kind, json.dumps(detail))
        )

    async def mark_delivered(self, ticket_id: int, state: TicketState) -> bool:
        """Record that the delivery of ``ticket_id``, finished in ``state``, is written.

        False when the ticket has meanwhile left that state (a retry): it is delivered again
        when it finishes again.
        """
        changed = await self._db.write_one(
            queries.MARK_DELIVERED, (self._clock(), ticket_id, state.value)
        )
        return bool(changed)

    # -- a fleet's leases ---------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        """Whether other daemons may claim from this database (PostgreSQL with a lease)."""
        return self._db.leases is not None

    async def renew_leases(self, tokens: Sequence[str]) -> set[str]:
        """Extend this daemon's leases on ``tokens``; the ones it still holds. On a database
        of one daemon there are no leases: every token is held."""
        leases = self._db.leases
        return set(tokens) if leases is None else await leases.renew(tokens)

    @property
    def shared_rates(self) -> SharedRates | None:
        """The fleet's rate-limit buckets, for a daemon on a shared database."""
        return self._db.rates

    async def fleet(self, horizon_seconds: float) -> list[dict[str, Any]]:
        """Every daemon of a shared database heard from within ``horizon_seconds``, with the
        tasks each runs; empty on a database of one daemon (its row is the heartbeat)."""
        return await self._db.fleet(horizon_seconds)

    async def reap_expired_leases(self) -> list[int]:
        """Put the tasks whose attempt's lease expired back to ready (any daemon may)."""
        leases = self._db.leases
        return [] if leases is None else await leases.reap(self._clock())

    async def write_heartbeat(
        self, *, pid: int, started_at: float, version: str, status: dict[str, Any]
    ) -> None:
        """Replace the daemon's row: who runs, since when, and its latest status snapshot.
        On a shared database, each daemon has a row of its own."""
        if self._db.leases is not None:
            await self._db.leases.beat(
                pid=pid, started_at=started_at, version=version, status=status
            )
            return
        await self._db.write_one(
            queries.WRITE_HEARTBEAT, (pid, started_at, self._clock(), version, json.dumps(status))
        )

    async def clear_heartbeat(self, pid: int) -> None:
        """Remove the daemon's row if ``pid`` wrote it (a newer daemon's row is left alone)."""
        if self._db.leases is not None:
            await self._db.leases.leave()
            return
        await self._db.write_one(queries.CLEAR_HEARTBEAT, (pid,))
