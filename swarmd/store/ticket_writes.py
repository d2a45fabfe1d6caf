"""The store's ticket verbs: submit a ticket, add tasks to it, cancel and retry.

``TicketWrites`` is the middle layer of ``Store``: it changes the graph of a ticket, while
``Store`` itself closes attempts over it. Each verb is one short write transaction.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from swarmd.errors import InputError, InvalidTransitionError, NotFoundError, TicketError
from swarmd.models import (
    ACTIVE_TASK_STATES,
    RETRYABLE_TASK_STATES,
    Clock,
    SubmitResult,
    Task,
    TaskSpec,
    TaskState,
    TicketSpec,
    TicketState,
)
from swarmd.store import queries
from swarmd.store.backend import Row, Transaction
from swarmd.store.dag import order_new_tasks
from swarmd.store.reads import StoreReads, require_ticket, task_by_name
from swarmd.store.rows import dump_json, task_from_row
from swarmd.store.transitions import (
    BROKEN_NEED_STATES,
    move_task,
    move_tasks,
    revivable_with_dependents,
    revive,
    settle_ticket,
    skip_downstream,
)

_CANCELLED_ON_REQUEST = "cancelled on request"


def _same_spec(stored: str, submitted: str | None) -> bool:
    """Whether two ``tickets.spec`` columns hold the same ticket, whatever their keys (the
    key matched already, whether it came from the file or from ``--key``)."""
    old, new = json.loads(stored), json.loads(submitted or "{}")
    old.pop("key", None)
    new.pop("key", None)
    return bool(old == new)


class TicketWrites(StoreReads):
    """Submitting, growing, cancelling and retrying tickets."""

    _clock: Clock

    # -- submitting -----------------------------------------------------------------------

    async def submit_ticket(
        self,
        spec: TicketSpec,
        *,
        priority: int | None = None,
        key: str | None = None,
        default_max_attempts: int = 3,
        repo: Mapping[str, Any] | None = None,
    ) -> SubmitResult:
        """Write a ticket and its tasks in one transaction.

        ``repo`` binds a ticket to a repository (``swarmd.daemon.repos.RepoBinding``'s dict):
        kept with it, in the same transaction.

        With an idempotency key (``key`` or ``spec.key``) that an existing ticket already
        has, nothing is written: if that ticket was submitted from the same spec, its id
        comes back with ``created=False``; if not, ``InputError`` names the key and it.
        """
        if not spec.tasks:
            raise TicketError(f"ticket {spec.title!r} has no tasks")
        ordered = order_new_tasks(spec.tasks)
        key = spec.key if key is None else key
        priority = spec.priority if priority is None else priority
        now = self._clock()
        spec_json = dump_json(dataclasses.asdict(spec))

        def submit(txn: Transaction) -> SubmitResult:
            if key is not None:
                existing = txn.fetch_one(queries.TICKET_BY_KEY, (key,))
                if existing is not None:
                    if not _same_spec(existing["spec"], spec_json):
                        raise InputError(
                            f"key {key!r} already names ticket {existing['id']}, which was "
                            "submitted with other content; nothing was written "
                            "(use a new key, or submit the same ticket)"
                        )
                    return SubmitResult(ticket_id=existing["id"], created=False)
            next_id = txn.fetch_one(queries.NEXT_TICKET_ID)
            assert next_id is not None  # migration 3 made the counter
            row = txn.fetch_one(
                queries.INSERT_TICKET,
                (
                    next_id[0],
                    spec.title,
                    priority,
                    key,
                    spec.agent,
                    int(spec.plan),
                    spec.prompt,
                    dump_json(spec.model),
                    spec_json,
                    now,
                ),
            )
            assert row is not None  # INSERT ... RETURNING always yields the new row
            ticket_id: int = row["id"]
            if repo is not None:
                txn.execute(queries.INSERT_REPO_TICKET, (ticket_id, dump_json(dict(repo))))
            self._insert_tasks(
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

        return await self._db.write(submit)

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

        def add(txn: Transaction) -> list[int]:
            ticket = txn.fetch_one(queries.TICKET_FOR_UPDATE, (ticket_id,))
            if ticket is None:
                raise NotFoundError(f"there is no ticket {ticket_id}")
            txn.lock_ticket(ticket_id)
            if TicketState(ticket["state"]).is_terminal:
                raise InvalidTransitionError(f"ticket {ticket_id} is already finished")
            return self._add_tasks(
                txn, ticket, tasks, after=after, default_max_attempts=default_max_attempts, now=now
            )

        return await self._db.write(add)

    def _add_tasks(
        self,
        txn: Transaction,
        ticket: Row,
        tasks: Sequence[TaskSpec],
        *,
        after: str | None,
        default_max_attempts: int,
        now: float,
    ) -> list[int]:
        existing = {
            row["name"]: row for row in txn.fetch(queries.TASK_IDS_OF_TICKET, (ticket["id"],))
        }
        ordered = order_new_tasks(tasks, existing=existing, after=after)
        ids = self._insert_tasks(
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

    def _insert_tasks(
        self,
        txn: Transaction,
        ticket_id: int,
        ordered: Sequence[TaskSpec],
        *,
        existing: dict[str, Row],
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
        txn.execute_many(queries.INSERT_TASK, rows)
        ids = {
            row["name"]: row["id"] for row in txn.fetch(queries.TASK_IDS_OF_TICKET, (ticket_id,))
        }
        edges = [(ids[spec.name], ids[need]) for spec in ordered for need in spec.needs]
        if edges:
            txn.execute_many(queries.INSERT_EDGE, edges)
        return [ids[spec.name] for spec in ordered]

    # -- cancel and retry -------------------------------------------------------------------

    async def cancel(self, ticket_id: int, task_name: str | None = None) -> list[Task]:
        """Cancel a ticket's unfinished tasks, or one task; tasks needing them are skipped.

        A running task becomes cancelled at once; its attempt stays open until the
        supervisor has stopped the worker and closes it. Returns the cancelled tasks.
        """
        now = self._clock()

        def cancel(txn: Transaction) -> list[Task]:
            require_ticket(txn, ticket_id)
            txn.lock_ticket(ticket_id)
            if task_name is None:
                rows = move_tasks(
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
                task = task_by_name(txn, ticket_id, task_name)
                if task.state.is_terminal:
                    raise InvalidTransitionError(f"task {task.ref} is already {task.state}")
                skip_downstream(
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
            settle_ticket(txn, ticket_id, at=now)
            return cancelled

        return await self._db.write(cancel)

    async def retry(self, ticket_id: int, task_name: str | None = None) -> list[Task]:
        """Give dead, failed, cancelled or skipped tasks a fresh start with no failures.

        For a whole ticket, every such task is revived. For one task, its skipped
        dependents are revived too, as far as nothing else they need is still broken.
        Revived tasks are ready when all their needs succeeded, else blocked.
        """
        now = self._clock()

        def retry(txn: Transaction) -> list[Task]:
            require_ticket(txn, ticket_id)
            txn.lock_ticket(ticket_id)
            if task_name is None:
                ids = [
                    row["id"]
                    for row in txn.fetch(queries.TASK_IDS_OF_TICKET, (ticket_id,))
                    if TaskState(row["state"]) in RETRYABLE_TASK_STATES
                ]
                if not ids:
                    raise InvalidTransitionError(f"ticket {ticket_id} has nothing to retry")
            else:
                task = task_by_name(txn, ticket_id, task_name)
                ids = revivable_with_dependents(txn, task)
            revive(txn, ids, at=now)
            settle_ticket(txn, ticket_id, at=now)
            rows = txn.fetch(queries.TASKS_BY_IDS, (json.dumps(ids),))
            return [task_from_row(row) for row in rows]

        return await self._db.write(retry)
