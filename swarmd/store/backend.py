"""What the store's verbs need of a database: the contract both backends keep.

A verb is one synchronous function over a ``Transaction``, run whole by the backend's
``write`` or ``read``; the verbs never see which engine runs them. SQLite
(``swarmd.store.database``) is the embedded default; PostgreSQL
(``swarmd.store.postgres``) lets several daemons on several hosts share one queue.

Where the engines differ in what a transaction must do, the transaction has a hook and each
backend fills it in: on SQLite, whose ``BEGIN IMMEDIATE`` already makes every writer wait
for the one before, the hooks do nothing; on PostgreSQL they take row locks and leases.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, Protocol, TypeVar

from swarmd.store.queries import INSERT_EVENT

T = TypeVar("T")

# A result row: by position and by column name (``sqlite3.Row``, or the PostgreSQL
# backend's row). Rows come straight from the driver and are read by the store only.
Row = Any

BackendKind = Literal["sqlite", "postgresql"]


@dataclasses.dataclass(frozen=True, slots=True)
class LeaseHolder:
    """Who owns the attempts a daemon claims, on a backend shared by several daemons.

    ``owner`` is unique to one run of one daemon; ``host`` and ``home`` say where its
    processes and files are, so the next daemon of the same home can recover them.
    """

    owner: str
    host: str
    home: str
    seconds: float


class Transaction:
    """Statements run inside one transaction, synchronously, on one connection.

    Event rows are collected and written together, in one ``execute_many``, just before
    the transaction ends. SQL is written with ``?`` placeholders.
    """

    def __init__(self) -> None:
        self._events: list[tuple[float, int | None, int | None, str, str]] = []

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one statement and return all its rows."""
        raise NotImplementedError

    def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement whose rows, if any, are not needed."""
        raise NotImplementedError

    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters."""
        raise NotImplementedError

    # -- the backend's hooks ------------------------------------------------------------

    def lock_ticket(self, ticket_id: int) -> None:
        """Make every other transaction that changes this ticket's tasks wait for this one,
        so a ticket's last two tasks finishing at once cannot both see the other running."""

    def lock_ticket_of_attempt(self, attempt_id: int) -> None:
        """``lock_ticket`` for the ticket of an attempt, before its task changes state."""

    def hold_attempt(self, attempt_id: int) -> bool:
        """Lock the open attempt against the lease reaper; False if its lease has expired
        (the reaper owns it now, and its result must be refused)."""
        return True

    def take_lease(self, attempt_id: int) -> None:
        """Make this daemon the owner of a newly claimed attempt, for one lease."""

    # -- events -------------------------------------------------------------------------

    def add_event(
        self,
        at: float,
        kind: str,
        *,
        ticket_id: int | None = None,
        task_id: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Queue one row for the event log."""
        self._events.append((at, ticket_id, task_id, kind, json.dumps(detail or {})))

    def flush(self) -> None:
        """Write the queued event rows now."""
        if self._events:
            events, self._events = self._events, []
            self.execute_many(INSERT_EVENT, events)


class Leases(Protocol):
    """A daemon's leases on a shared database (``swarmd.store.postgres.leases``)."""

    holder: LeaseHolder

    async def renew(self, tokens: Sequence[str]) -> set[str]: ...

    async def reap(self, at: float) -> list[int]: ...

    async def left_by_this_home(self) -> set[int]: ...

    async def beat(self, *, pid: int, started_at: float, version: str, status: Any) -> None: ...

    async def leave(self) -> None: ...

    async def close(self) -> None: ...


class SharedSlot(Protocol):
    """A slot taken (``delay`` before the request may go), or why not."""

    @property
    def delay(self) -> float | None: ...

    @property
    def paused_s(self) -> float | None: ...

    @property
    def wait_s(self) -> float | None: ...


class SharedRates(Protocol):
    """A fleet's rate-limit buckets (``swarmd.store.postgres.limits``)."""

    async def take(
        self, key: str, *, interval: float, burst: int, max_wait: float
    ) -> SharedSlot: ...

    async def pause(self, key: str, seconds: float) -> None: ...

    async def close(self) -> None: ...


class Backend(Protocol):
    """A database the store runs its verbs on."""

    kind: BackendKind
    leases: Leases | None  # None: one daemon per database, its attempts known by pid
    rates: SharedRates | None  # None: the daemon's own limiter is the only one

    @property
    def name(self) -> str:
        """What messages call the database: a file's path, or a URL with no password."""
        ...

    async def write(self, body: Callable[[Transaction], T], *, inline: bool = False) -> T: ...

    async def read(
        self, body: Callable[[Transaction], T], *, snapshot: bool = False, inline: bool = False
    ) -> T: ...

    async def write_one(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def maintain(self, sql: str) -> None: ...

    async def schema_version(self) -> int: ...

    async def fleet(self, horizon_seconds: float) -> list[dict[str, Any]]: ...

    def data_version(self) -> int: ...

    async def close(self) -> None: ...


async def on_thread(
    executor: concurrent.futures.Executor, job: Callable[[Callable[[], bool]], T]
) -> T:
    """Run ``job(abandoned)`` on ``executor``'s thread and await it.

    The thread cannot be stopped mid-statement: when the caller is cancelled, ``abandoned()``
    turns true (the job rolls back instead of committing), and the caller leaves only once
    the job is done with its connection.
    """
    abandon = threading.Event()
    future = asyncio.get_running_loop().run_in_executor(executor, job, abandon.is_set)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        abandon.set()
        with contextlib.suppress(Exception):
            await future
        raise
