"""The queue's verbs: submit, claim, close attempts, cancel, retry, and the reads.

Every verb is one short transaction over plain models. The store never spawns, sleeps, or
calls an LLM; time comes from the injected clock and jitter from the injected ``rng``.
"""

from __future__ import annotations

import dataclasses
import json
import random
import secrets
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from swarmd.errors import InvalidTransitionError, NotFoundError, StaleAttemptError, TicketError
from swarmd.models import (
    ACTIVE_TASK_STATES,
    RETRYABLE_TASK_STATES,
    Attempt,
    ClaimedTask,
    Clock,
    ExitReason,
    SubmitResult,
    Task,
    TaskOutcome,
    TaskSpec,
    TaskState,
    TicketSpec,
    TicketState,
)
from swarmd.store import queries
from swarmd.store.backoff import retry_delay
from swarmd.store.dag import order_new_tasks
from swarmd.store.database import Database, Transaction
from swarmd.store.reads import StoreReads, require_ticket, task_by_name
from swarmd.store.rows import (
    dump_json,
    task_from_row,
)
from swarmd.store.transitions import (
    BROKEN_NEED_STATES,
    move_task,
    move_tasks,
    release_dependents,
    revivable_with_dependents,
    revive,
    settle_ticket,
    skip_downstream,
)

_CANCELLED_ON_REQUEST = "cancelled on request"


@dataclasses.dataclass(frozen=True, slots=True)
class _CurrentAttempt:
    """An open attempt that passed the fencing check, with what closing it needs to know."""

    attempt_id: int
    task: Task
    has_dependents: bool
    ticket_busy: bool  # the ticket has unfinished tasks besides this one


class Store(StoreReads):
    """The durable queue of tickets and tasks in one SQLite file."""

    def __init__(
        self,
        database: Database,
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
        path: Path,
        *,
        clock: Clock = time.time,
        rng: random.Random | None = None,
        backoff_base: float = 5.0,
        backoff_max: float = 300.0,
    ) -> Store:
        """Open the database at ``path``, creating its directory and migrating its schema."""
        database = await Database.connect(Path(path))
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

    # -- submitting -----------------------------------------------------------------------

    async def submit_ticket(
        self,
        spec: TicketSpec,
        *,
        priority: int | None = None,
        key: str | None = None,
        default_max_attempts: int = 3,
    ) -> SubmitResult:
        """Write a ticket and its tasks in one transaction.

        With an idempotency key (``key`` or ``spec.key``) that an existing ticket already
        has, nothing is written and that ticket's id comes back with ``created=False``.
        """
        if not spec.tasks:
            raise TicketError(f"ticket {spec.title!r} has no tasks")
        ordered = order_new_tasks(spec.tasks)
        key = spec.key if key is None else key
        priority = spec.priority if priority is None else priority
        now = self._clock()
        async with self._db.write() as txn:
            if key is not None:
                existing = await txn.fetch_one(queries.TICKET_ID_BY_KEY, (key,))
                if existing is not None:
                    return SubmitResult(ticket_id=existing["id"], created=False)
            row = await txn.fetch_one(
                queries.INSERT_TICKET,
                (
                    spec.title,
                    priority,
                    key,
                    spec.agent,
                    int(spec.plan),
                    spec.prompt,
                    dump_json(spec.model),
                    dump_json(dataclasses.asdict(spec)),
                    now,
                ),
            )
            assert row is not None  # INSERT ... RETURNING always yields the new row
            ticket_id: int = row["id"]
            await self._insert_tasks(
                txn,
                ticket_id,
                ordered,
                existing={},
                agent=spec.agent,
                priority=priority,
                default_max_attempts=default_max_attempts,
                now=now,
            )
            txn.add_event(
                now,
                "ticket_submitted",
                ticket_id=ticket_id,
                detail={"title": spec.title, "tasks": len(ordered), "key": key},
            )
        return SubmitResult(ticket_id=ticket_id, created=True)

    async def add_tasks(
        self,
        ticket_id: int,
        tasks: Sequence[TaskSpec],
        *,
        after: str | None = None,
        default_max_attempts: int = 3,
    ) -> list[int]:
        """Add tasks to an unfinished ticket; returns their ids in dependency order.

        New tasks may need each other and the ticket's existing tasks; with ``after``, every
        new task that needs nothing needs that existing task instead.
        """
        now = self._clock()
        async with self._db.write() as txn:
            ticket = await txn.fetch_one(queries.TICKET_FOR_UPDATE, (ticket_id,))
            if ticket is None:
                raise NotFoundError(f"there is no ticket {ticket_id}")
            if TicketState(ticket["state"]).is_terminal:
                raise InvalidTransitionError(f"ticket {ticket_id} is already finished")
            return await self._add_tasks(
                txn, ticket, tasks, after=after, default_max_attempts=default_max_attempts, now=now
            )

    async def _add_tasks(
        self,
        txn: Transaction,
        ticket: sqlite3.Row,
        tasks: Sequence[TaskSpec],
        *,
        after: str | None,
        default_max_attempts: int,
        now: float,
    ) -> list[int]:
        existing = {
            row["name"]: row for row in await txn.fetch(queries.TASK_IDS_OF_TICKET, (ticket["id"],))
        }
        ordered = order_new_tasks(tasks, existing=existing, after=after)
        ids = await self._insert_tasks(
            txn,
            ticket["id"],
            ordered,
            existing=existing,
            agent=ticket["agent"],
            priority=ticket["priority"],
            default_max_attempts=default_max_attempts,
            now=now,
        )
        txn.add_event(
            now,
            "tasks_added",
            ticket_id=ticket["id"],
            detail={"tasks": [spec.name for spec in ordered], "after": after},
        )
        return ids

    async def _insert_tasks(
        self,
        txn: Transaction,
        ticket_id: int,
        ordered: Sequence[TaskSpec],
        *,
        existing: dict[str, sqlite3.Row],
        agent: str,
        priority: int,
        default_max_attempts: int,
        now: float,
    ) -> list[int]:
        rows = []
        for spec in ordered:
            pending = 0
            for need in spec.needs:
                old = existing.get(need)
                if old is None:
                    pending += 1
                    continue
                need_state = TaskState(old["state"])
                if need_state in BROKEN_NEED_STATES:
                    raise TicketError(
                        f"task {spec.name!r} needs {need!r}, which is {need_state} and will not run"
                    )
                pending += need_state is not TaskState.SUCCEEDED
            rows.append(
                (
                    ticket_id,
                    spec.name,
                    (TaskState.BLOCKED if pending else TaskState.READY).value,
                    spec.agent or agent,
                    spec.prompt,
                    dump_json(spec.command),
                    dump_json(spec.needs),
                    priority if spec.priority is None else spec.priority,
                    default_max_attempts if spec.max_attempts is None else spec.max_attempts,
                    spec.timeout_seconds,
                    dump_json(spec.model),
                    dump_json(spec.checks),
                    pending,
                    now,
                )
            )
        await txn.execute_many(queries.INSERT_TASK, rows)
        ids = {
            row["name"]: row["id"]
            for row in await txn.fetch(queries.TASK_IDS_OF_TICKET, (ticket_id,))
        }
        edges = [(ids[spec.name], ids[need]) for spec in ordered for need in spec.needs]
        if edges:
            await txn.execute_many(queries.INSERT_EDGE, edges)
        return [ids[spec.name] for spec in ordered]

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
        async with self._db.write() as txn:
            moved = await move_tasks(
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
                token=secrets.token_hex(16),
                started_at=now,
                ended_at=None,
                pid=None,
                pid_create_time=None,
                exit_reason=None,
                error=None,
                result=None,
            )
            txn.defer(
                queries.INSERT_ATTEMPT,
                (attempt.id, attempt.task_id, attempt.number, attempt.token, now),
            )
            if row["ticket_state"] == TicketState.QUEUED.value:
                txn.defer(queries.START_TICKET, (now, row["ticket_id"]))
                txn.add_event(now, "ticket_started", ticket_id=row["ticket_id"])
        return ClaimedTask(task=task_from_row(row), attempt=attempt)

    async def record_spawn(self, token: str, *, pid: int, pid_create_time: float) -> None:
        """Remember which process runs an attempt, so a restart can find and kill it."""
        updated = await self._db.write_one(queries.RECORD_SPAWN, (pid, pid_create_time, token))
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
        async with self._db.write() as txn:
            current = await self._fence(txn, token)
            task = current.task
            ready: list[int] = []
            ticket_state = None
            if task.state is TaskState.RUNNING:
                if new_tasks:
                    ticket = await txn.fetch_one(queries.TICKET_FOR_UPDATE, (task.ticket_id,))
                    assert ticket is not None  # a running task's ticket exists
                    await self._add_tasks(
                        txn,
                        ticket,
                        new_tasks,
                        after=task.name,
                        default_max_attempts=default_max_attempts,
                        now=now,
                    )
                if current.has_dependents or new_tasks:
                    ready = await release_dependents(txn, task.id, at=now)
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
                ticket_state = await settle_ticket(txn, task.ticket_id, at=now)
        return TaskOutcome(task=task, newly_ready=tuple(ready), ticket_state=ticket_state)

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
        async with self._db.write() as txn:
            current = await self._fence(txn, token)
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
            skipped = await skip_downstream(
                txn, [task.id], reason=f"needs {task.ref}, which died", at=now
            )
            ticket_state = await settle_ticket(txn, task.ticket_id, at=now)
        return TaskOutcome(task=task, skipped=tuple(skipped), ticket_state=ticket_state)

    async def interrupt_attempt(
        self, token: str, *, reason: ExitReason = ExitReason.INTERRUPTED, error: str = ""
    ) -> TaskOutcome:
        """Close an attempt cut short by shutdown or a crash: the task is ready again and no
        failure is counted. A task cancelled meanwhile stays cancelled."""
        now = self._clock()
        async with self._db.write() as txn:
            current = await self._fence(txn, token)
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

    async def _fence(self, txn: Transaction, token: str) -> _CurrentAttempt:
        """The open, current attempt with this token and its task; StaleAttemptError if none."""
        row = await txn.fetch_one(queries.CURRENT_ATTEMPT_BY_TOKEN, (token,))
        if row is None:
            raise StaleAttemptError(
                f"attempt {token} is not the open attempt of any task; its result is refused"
            )
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
        txn.defer(
            queries.CLOSE_ATTEMPT,
            (at, reason.value, error, dump_json(result), current.attempt_id),
        )

    async def release_due_retries(self) -> list[int]:
        """Make every failed task whose backoff is over ready again; returns their ids."""
        now = self._clock()
        async with self._db.write() as txn:
            moved = await move_tasks(
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

    # -- cancel and retry -------------------------------------------------------------------

    async def cancel(self, ticket_id: int, task_name: str | None = None) -> list[Task]:
        """Cancel a ticket's unfinished tasks, or one task; tasks needing them are skipped.

        A running task becomes cancelled at once; its attempt stays open until the
        supervisor has stopped the worker and closes it. Returns the cancelled tasks.
        """
        now = self._clock()
        async with self._db.write() as txn:
            await require_ticket(txn, ticket_id)
            if task_name is None:
                rows = await move_tasks(
                    txn,
                    TaskState.CANCELLED,
                    from_states=ACTIVE_TASK_STATES,
                    where=queries.WHERE_TICKET,
                    params=(ticket_id,),
                    sets=", finished_at = ?, retry_at = NULL, last_error = ?",
                    set_params=(now, _CANCELLED_ON_REQUEST),
                    kind="task_cancelled",
                    at=now,
                )
                if not rows:
                    raise InvalidTransitionError(f"ticket {ticket_id} is already finished")
                cancelled = [task_from_row(row) for row in rows]
            else:
                task = await task_by_name(txn, ticket_id, task_name)
                if task.state.is_terminal:
                    raise InvalidTransitionError(f"task {task.ref} is already {task.state}")
                await skip_downstream(
                    txn, [task.id], reason=f"needs {task.ref}, which was cancelled", at=now
                )
                cancelled = [
                    move_task(
                        txn,
                        task,
                        TaskState.CANCELLED,
                        kind="task_cancelled",
                        at=now,
                        finished_at=now,
                        retry_at=None,
                        last_error=_CANCELLED_ON_REQUEST,
                    )
                ]
            await settle_ticket(txn, ticket_id, at=now)
        return cancelled

    async def retry(self, ticket_id: int, task_name: str | None = None) -> list[Task]:
        """Give dead, failed, cancelled or skipped tasks a fresh start with no failures.

        For a whole ticket, every such task is revived. For one task, its skipped
        dependents are revived too, as far as nothing else they need is still broken.
        Revived tasks are ready when all their needs succeeded, else blocked.
        """
        now = self._clock()
        async with self._db.write() as txn:
            await require_ticket(txn, ticket_id)
            if task_name is None:
                ids = [
                    row["id"]
                    for row in await txn.fetch(queries.TASK_IDS_OF_TICKET, (ticket_id,))
                    if TaskState(row["state"]) in RETRYABLE_TASK_STATES
                ]
                if not ids:
                    raise InvalidTransitionError(f"ticket {ticket_id} has nothing to retry")
            else:
                task = await task_by_name(txn, ticket_id, task_name)
                ids = await revivable_with_dependents(txn, task)
            await revive(txn, ids, at=now)
            await settle_ticket(txn, ticket_id, at=now)
            rows = await txn.fetch(queries.TASKS_BY_IDS, (json.dumps(ids),))
        return [task_from_row(row) for row in rows]

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

    async def write_heartbeat(
        self, *, pid: int, started_at: float, version: str, status: dict[str, Any]
    ) -> None:
        """Replace the daemon's row: who runs, since when, and its latest status snapshot."""
        await self._db.write_one(
            queries.WRITE_HEARTBEAT, (pid, started_at, self._clock(), version, json.dumps(status))
        )

    async def clear_heartbeat(self, pid: int) -> None:
        """Remove the daemon's row if ``pid`` wrote it (a newer daemon's row is left alone)."""
        await self._db.write_one(queries.CLEAR_HEARTBEAT, (pid,))
