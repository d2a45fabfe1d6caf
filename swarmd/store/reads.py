"""The store's reads: tickets, tasks, attempts, queue depth, the event log, the daemon row.

``StoreReads`` is the read-only half of ``Store``; the lookups at the bottom are shared
with the writing verbs, which call them inside their own transactions.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from swarmd.errors import NotFoundError
from swarmd.models import Attempt, Delivery, Event, Task, TaskState, Ticket, TicketState
from swarmd.store import queries
from swarmd.store.backend import Backend, BackendKind, Transaction
from swarmd.store.rows import (
    attempt_from_row,
    attempt_id_of,
    event_from_row,
    task_from_row,
    ticket_from_row,
)


class StoreReads:
    """Everything ``status``, ``show``, ``tickets`` and the supervisor's recovery look at."""

    def __init__(self, database: Backend) -> None:
        self._db = database

    @property
    def name(self) -> str:
        """The database as messages name it: a file's path, or a URL with no password."""
        return self._db.name

    @property
    def kind(self) -> BackendKind:
        return self._db.kind

    @property
    def database(self) -> Backend:
        """The open database, for read-only companions such as ``StoreStats``."""
        return self._db

    async def schema_version(self) -> int:
        return await self._db.schema_version()

    def data_version(self) -> int:
        """A number that changes when others commit (other processes, other stores, and
        this store's verbs that ran on its thread), but not for this store's inline verbs.
        Synchronous and cheap."""
        return self._db.data_version()

    async def get_ticket(self, ticket_id: int) -> Ticket:
        def read(txn: Transaction) -> Ticket:
            row = txn.fetch_one(queries.TICKET_BY_ID, (ticket_id,))
            if row is None:
                raise NotFoundError(f"there is no ticket {ticket_id}")
            counts = txn.fetch(queries.TASK_COUNTS_OF_TICKET, (ticket_id,))
            return ticket_from_row(row, {count["state"]: count["n"] for count in counts})

        return await self._db.read(read, snapshot=True)

    async def get_delivery(self, ticket_id: int) -> Delivery:
        """Where the delivery of ``ticket_id`` stands (it must exist)."""
        row = await self._db.read(
            lambda txn: txn.fetch_one(queries.TICKET_DELIVERY, (ticket_id,)), inline=True
        )
        if row is None:
            raise NotFoundError(f"there is no ticket {ticket_id}")
        error = None
        if row["failure"] is not None:
            error = str(json.loads(row["failure"]).get("error") or "no reason recorded")
        return Delivery(written=row["delivered_at"] is not None, error=error)

    async def list_tickets(
        self, *, state: TicketState | None = None, limit: int = 100
    ) -> list[Ticket]:
        """Tickets, newest first, each with its task counts."""

        def read(txn: Transaction) -> list[Ticket]:
            if state is None:
                rows = txn.fetch(queries.TICKETS_NEWEST_FIRST, (limit,))
            else:
                rows = txn.fetch(queries.TICKETS_IN_STATE_NEWEST_FIRST, (state.value, limit))
            ids = json.dumps([row["id"] for row in rows])
            counts: dict[int, dict[str, int]] = {row["id"]: {} for row in rows}
            for count in txn.fetch(queries.TASK_COUNTS_OF_TICKETS, (ids,)):
                counts[count["ticket_id"]][count["state"]] = count["n"]
            return [ticket_from_row(row, counts[row["id"]]) for row in rows]

        return await self._db.read(read, snapshot=True)

    async def list_tasks(self, ticket_id: int) -> list[Task]:
        """A ticket's tasks in dependency order (which is also the order they were added)."""

        def read(txn: Transaction) -> list[Task]:
            rows = txn.fetch(queries.TASKS_OF_TICKET, (ticket_id,))
            if not rows:
                require_ticket(txn, ticket_id)
            return [task_from_row(row) for row in rows]

        return await self._db.read(read, snapshot=True)

    async def get_task(self, ticket_id: int, name: str) -> Task:
        return await self._db.read(lambda txn: task_by_name(txn, ticket_id, name), inline=True)

    async def list_attempts(self, task_id: int) -> list[Attempt]:
        rows = await self._db.read(lambda txn: txn.fetch(queries.ATTEMPTS_OF_TASK, (task_id,)))
        return [attempt_from_row(row) for row in rows]

    async def queue_depth(self) -> dict[str, int]:
        """The number of tasks in each state, every state present."""
        rows = await self._db.read(lambda txn: txn.fetch(queries.QUEUE_DEPTH))
        depth = {state.value: 0 for state in TaskState}
        depth.update({row["state"]: row["n"] for row in rows})
        return depth

    async def next_retry_at(self) -> float | None:
        """When the earliest failed task's backoff ends; None when no task waits to retry."""
        row = await self._db.read(lambda txn: txn.fetch_one(queries.NEXT_RETRY_AT), inline=True)
        return None if row is None else row[0]

    async def running_attempts(self) -> list[tuple[Task, Attempt]]:
        """Every open attempt with its task, oldest first (for crash recovery and status).

        On a shared database, only those a previous daemon of this home left: the others
        belong to other daemons, alive or waiting for the lease reaper."""
        leases = self._db.leases
        left = await leases.left_by_this_home() if leases is not None else None

        def read(txn: Transaction) -> list[tuple[Task, Attempt]]:
            attempts = [attempt_from_row(row) for row in txn.fetch(queries.OPEN_ATTEMPTS)]
            if left is not None:
                attempts = [attempt for attempt in attempts if attempt.id in left]
            ids = json.dumps(sorted({attempt.task_id for attempt in attempts}))
            tasks = {
                row["id"]: task_from_row(row) for row in txn.fetch(queries.TASKS_BY_IDS, (ids,))
            }
            return [(tasks[attempt.task_id], attempt) for attempt in attempts]

        # Open attempts are at most the running workers (plus cancelled ones not yet closed).
        return await self._db.read(read, snapshot=True, inline=True)

    async def current_tokens(self, tokens: Collection[str]) -> set[str]:
        """Those of ``tokens`` that still name the current attempt of a running task."""
        if not tokens:
            return set()
        ids = [attempt_id_of(token) for token in tokens]
        params = (json.dumps(ids), json.dumps(list(tokens)))
        rows = await self._db.read(
            lambda txn: txn.fetch(queries.CURRENT_TOKENS, params), inline=True
        )
        return {row["token"] for row in rows}

    async def events(
        self, *, ticket_id: int | None = None, after_id: int = 0, limit: int = 1000
    ) -> list[Event]:
        """Events with ids above ``after_id``, oldest first; all tickets' or one ticket's."""
        params: tuple[int, ...]
        if ticket_id is None:
            sql, params = queries.EVENTS_AFTER, (after_id, limit)
        else:
            sql, params = queries.EVENTS_OF_TICKET_AFTER, (ticket_id, after_id, limit)
        rows = await self._db.read(lambda txn: txn.fetch(sql, params))
        return [event_from_row(row) for row in rows]

    async def undelivered_tickets(self) -> list[int]:
        """Finished tickets whose delivery has not been written since they finished."""
        rows = await self._db.read(lambda txn: txn.fetch(queries.UNDELIVERED_TICKETS))
        return [int(row[0]) for row in rows]

    async def read_heartbeat(self) -> dict[str, Any] | None:
        """The daemon's last heartbeat, or None when no daemon has written one."""
        row = await self._db.read(lambda txn: txn.fetch_one(queries.READ_HEARTBEAT), inline=True)
        if row is None:
            return None
        return {
            "pid": row["pid"],
            "started_at": row["started_at"],
            "heartbeat_at": row["heartbeat_at"],
            "version": row["version"],
            "status": json.loads(row["status"]),
        }


def require_ticket(txn: Transaction, ticket_id: int) -> None:
    if txn.fetch_one(queries.TICKET_BY_ID, (ticket_id,)) is None:
        raise NotFoundError(f"there is no ticket {ticket_id}")


def task_by_name(txn: Transaction, ticket_id: int, name: str) -> Task:
    row = txn.fetch_one(queries.TASK_BY_NAME, (ticket_id, name))
    if row is None:
        require_ticket(txn, ticket_id)
        raise NotFoundError(f"ticket {ticket_id} has no task named {name!r}")
    return task_from_row(row)
