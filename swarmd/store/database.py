"""The SQLite connection: setup, migrations, transactions, and translating SQLite's errors.

One ``aiosqlite`` connection in autocommit mode carries every statement; an ``asyncio.Lock``
serialises whole transactions on it, because a second coroutine's statements would
otherwise land inside the first one's transaction. Writes run in ``BEGIN IMMEDIATE``
transactions so the write lock is taken up front: a deferred transaction that later
upgrades to a writer fails at once with "database is locked" instead of waiting.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiosqlite

from swarmd.errors import StoreError
from swarmd.store import queries
from swarmd.store.schema import LATEST_VERSION, MIGRATIONS

BUSY_TIMEOUT_MS = 5000

_PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
)

# Programming and constraint errors are bugs in swarmd, not a property of the file: they
# keep their own type so they surface with a traceback instead of as a user-facing sentence.
_BUG_ERRORS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)


def describe_failure(path: Path, exc: sqlite3.Error) -> str:
    """One sentence, naming the file, for a SQLite error that makes the database unusable."""
    message = str(exc)
    lowered = message.lower()
    if "not a database" in lowered:
        return f"{path} is not a SQLite database; move it aside or point SWARMD_HOME elsewhere"
    if "malformed" in lowered or "corrupt" in lowered:
        return f"the database {path} is corrupt ({message}); restore it from a backup"
    if "locked" in lowered or "busy" in lowered:
        return (
            f"the database {path} stayed locked by another process for more than "
            f"{BUSY_TIMEOUT_MS / 1000:g} s"
        )
    if "unable to open" in lowered or "readonly" in lowered or "read-only" in lowered:
        return f"cannot open the database {path} for writing ({message})"
    return f"the database {path} failed: {message}"


def as_store_error(path: Path, exc: BaseException) -> StoreError | None:
    """The ``StoreError`` to raise in place of a SQLite failure; None for anything else."""
    if isinstance(exc, sqlite3.Error) and not isinstance(exc, _BUG_ERRORS):
        return StoreError(describe_failure(path, exc))
    return None


class Transaction:
    """Statements run inside one transaction.

    Writes whose results the verb does not need (closing an attempt, moving a task whose
    state was read in this transaction, event rows) are deferred: they are sent together,
    in one trip to aiosqlite's thread, before the next statement that needs an answer or
    before ``COMMIT``. Each trip costs a thread hand-off, which is most of a verb's time.
    """

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._deferred: list[tuple[str, Sequence[Any]]] = []
        self._events: list[tuple[float, int | None, int | None, str, str]] = []

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run one statement, after any deferred ones, and return all its rows."""
        await self.flush()
        return list(await self._conn.execute_fetchall(sql, params))

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters, in a single trip to SQLite."""
        await self.flush()
        await self._conn.executemany(sql, rows)

    def defer(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Queue a write that no other deferred write depends on; see the class docstring."""
        self._deferred.append((sql, params))

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

    async def flush(self) -> None:
        """Send every deferred write now, together, and wait for all of them."""
        if not self._deferred and not self._events:
            return
        deferred, self._deferred = self._deferred, []
        events, self._events = self._events, []
        # The writes are independent, so the order aiosqlite runs them in does not matter;
        # every one of them has finished before this returns, failed or not.
        writes: list[Awaitable[object]] = [
            self._conn.execute_fetchall(sql, params) for sql, params in deferred
        ]
        if events:
            writes.append(self._conn.executemany(queries.INSERT_EVENT, events))
        results = await asyncio.gather(*writes, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


class Database:
    """The open connection to one database file, and the lock that serialises its use."""

    def __init__(self, path: Path, conn: aiosqlite.Connection, probe: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._probe = probe
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def connect(cls, path: Path) -> Database:
        """Open (creating if needed) and migrate the database at ``path``."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory {path.parent}: {exc.strerror}") from exc
        conn: aiosqlite.Connection | None = None
        probe: sqlite3.Connection | None = None
        try:
            conn = await aiosqlite.connect(path, isolation_level=None)
            conn.row_factory = sqlite3.Row
            for pragma in _PRAGMAS:
                await conn.execute_fetchall(pragma)
            await enable_wal(conn)
            await migrate(conn, path)
            # A separate, synchronous connection only for PRAGMA data_version: it changes
            # whenever any *other* connection commits, this store's own aiosqlite one included.
            probe = sqlite3.connect(path, isolation_level=None)
            probe.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except BaseException as exc:
            if probe is not None:
                probe.close()
            if conn is not None:
                await conn.close()
            if error := as_store_error(path, exc):
                raise error from exc
            raise
        return cls(path, conn, probe)

    async def close(self) -> None:
        self._closed = True
        self._probe.close()
        async with self._lock:
            await self._conn.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store for {self.path} is already closed")

    def data_version(self) -> int:
        self._check_open()
        try:
            row = self._probe.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(describe_failure(self.path, exc)) from exc
        return int(row[0])

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Transaction]:
        """A ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on any exception."""
        self._check_open()
        async with self._lock:
            txn = Transaction(self._conn)
            try:
                await self._conn.execute_fetchall("BEGIN IMMEDIATE")
                yield txn
                await txn.flush()
                await self._conn.execute_fetchall("COMMIT")
            except BaseException as exc:
                await self._rollback()
                if error := as_store_error(self.path, exc):
                    raise error from exc
                raise

    @asynccontextmanager
    async def read(self, *, snapshot: bool = False) -> AsyncIterator[Transaction]:
        """Statements that only read; with ``snapshot``, they all see one consistent state."""
        self._check_open()
        async with self._lock:
            try:
                if snapshot:
                    await self._conn.execute_fetchall("BEGIN")
                try:
                    yield Transaction(self._conn)
                finally:
                    if snapshot:
                        await self._rollback()
            except BaseException as exc:
                if error := as_store_error(self.path, exc):
                    raise error from exc
                raise

    async def write_one(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run a single write statement; in autocommit mode it is a transaction of its own."""
        self._check_open()
        async with self._lock:
            try:
                return list(await self._conn.execute_fetchall(sql, params))
            except sqlite3.Error as exc:
                if error := as_store_error(self.path, exc):
                    raise error from exc
                raise

    async def _rollback(self) -> None:
        await rollback(self._conn)


async def rollback(conn: aiosqlite.Connection) -> None:
    """Undo whatever transaction is open, including one a cancelled statement opens later.

    A statement whose awaiting coroutine was cancelled still runs on aiosqlite's thread, in
    order: a cancelled BEGIN may open its transaction after we gave up on it. ROLLBACK is
    queued behind it and undoes it; with nothing to undo, SQLite's complaint is ignored.
    """
    with suppress(sqlite3.OperationalError):
        await conn.execute_fetchall("ROLLBACK")


async def enable_wal(conn: aiosqlite.Connection) -> None:
    """Switch the file to write-ahead logging (a no-op once any connection has done so)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            await conn.execute_fetchall("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            # Switching needs the write lock while the statement already holds a read
            # lock; SQLite refuses such an upgrade at once, without the busy handler, when
            # another connection is switching too (only on a brand-new file). Try again
            # until that one is done.
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.01)


async def migrate(conn: aiosqlite.Connection, path: Path) -> None:
    """Bring the schema up to ``LATEST_VERSION``; refuse a file from a newer swarmd."""
    version = await _user_version(conn)
    _check_known_version(path, version)
    if version == LATEST_VERSION:
        return
    await conn.execute_fetchall("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have migrated meanwhile.
        version = await _user_version(conn)
        _check_known_version(path, version)
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                await conn.execute_fetchall(statement)
        await conn.execute_fetchall(f"PRAGMA user_version = {LATEST_VERSION}")
        await conn.execute_fetchall("COMMIT")
    except BaseException:
        await rollback(conn)
        raise


async def _user_version(conn: aiosqlite.Connection) -> int:
    rows = list(await conn.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


def _check_known_version(path: Path, version: int) -> None:
    if version > LATEST_VERSION:
        raise StoreError(
            f"the database {path} has schema version {version}, newer than the {LATEST_VERSION} "
            "this swarmd knows; upgrade swarmd to use it"
        )
