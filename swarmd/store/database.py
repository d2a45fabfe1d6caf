"""The SQLite connections: setup, migrations, transactions, and translating SQLite's errors.

A verb of the store is one synchronous function over a ``Transaction``, run whole, in one
of two places:

- **inline**, on the event loop's own thread, when the verb's work is small and bounded
  (a claim, closing an attempt, a heartbeat, a lookup by key) and the write lock is free at
  once: ``BEGIN IMMEDIATE`` on a connection whose busy timeout is zero either gets the lock
  or fails at once. Such a verb is ~100 us of SQLite work with no thread hand-off.
- **on the store's thread** otherwise: a large verb (a 10,000-task submit, a listing), or
  any verb that found the write lock taken. There it waits up to ``busy_timeout`` for
  another process's writer without stalling the loop.

Why not one thread hop per statement (aiosqlite's model): each statement then costs a
hand-off to a thread and back (~70 us on a small VPS), a claim or a completion is five or
more statements, and the hand-offs were most of a verb's time. A transaction that runs in
one call also can never be held open across an ``await``.

The inline connection never checkpoints the write-ahead log itself (a checkpoint syncs the
file to disk); every ``CHECKPOINT_EVERY`` inline writes, a ``RESTART`` checkpoint runs on
the store's thread instead. It holds off writers while it copies the log into the file, so
the next write starts the log over and it stays small. Until it is done, inline writes
queue on the thread behind it instead of racing it for the write lock (a loop that keeps
writing wins that race every time; a passive checkpoint never catches up with it either).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

from swarmd.errors import StoreError
from swarmd.store.backend import BackendKind, Leases, Row, SharedRates, Transaction, on_thread
from swarmd.store.schema import LATEST_VERSION, MIGRATIONS

BUSY_TIMEOUT_MS = 5000
CHECKPOINT_EVERY = 256  # inline write transactions between two checkpoints
CHECKPOINT_WAIT_MS = 200  # how long a checkpoint waits for other processes' readers

_PRAGMAS = (
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
)

# Programming and constraint errors are bugs in swarmd, not a property of the file: they
# keep their own type so they surface with a traceback instead of as a user-facing sentence.
_BUG_ERRORS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)

T = TypeVar("T")


class SqliteTransaction(Transaction):
    """Statements run inside one SQLite transaction, synchronously, on one connection.

    SQLite's ``BEGIN IMMEDIATE`` already serialises every writer, so the backend's hooks
    (``lock_ticket``, ``hold_attempt``, ``take_lease``) have nothing to add.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__()
        self._conn = conn

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        rows: list[Row] = self._conn.execute(sql, params).fetchall()
        return rows

    def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self._conn.execute(sql, params).fetchone()
        return row

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._conn.execute(sql, params)

    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)


class _Abandoned(Exception):
    """Raised on the store's thread to roll back a transaction whose caller was cancelled."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Mode:
    """How a body's statements are wrapped, and whether they may write."""

    begin: str | None  # None: each statement is a transaction of its own
    end: str
    writes: bool


_WRITE = _Mode("BEGIN IMMEDIATE", "COMMIT", writes=True)
_SNAPSHOT = _Mode("BEGIN", "ROLLBACK", writes=False)
_STATEMENTS = _Mode(None, "", writes=False)
_STATEMENT_WRITE = _Mode(None, "", writes=True)


class _LockTaken:
    """What an inline attempt returns when another connection holds the write lock."""


_LOCK_TAKEN = _LockTaken()


def _transact(
    conn: sqlite3.Connection,
    body: Callable[[Transaction], T],
    mode: _Mode,
    abandoned: Callable[[], bool] = lambda: False,
) -> T:
    """Run ``body`` as ``mode`` says; roll back on any exception."""
    if mode.begin is not None:
        conn.execute(mode.begin)
    try:
        txn = SqliteTransaction(conn)
        result = body(txn)
        txn.flush()
        if abandoned():
            raise _Abandoned
        if mode.begin is not None:
            conn.execute(mode.end)
    except BaseException:
        if mode.begin is not None:
            rollback(conn)
        raise
    return result


def _is_busy(exc: sqlite3.Error) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


class Database:
    """The two connections to one database file, and the thread that runs its long verbs.

    ``inline`` is used only on the event loop's thread, ``worker`` only on the store's thread.
    """

    def __init__(
        self,
        path: Path,
        *,
        inline: sqlite3.Connection,
        worker: sqlite3.Connection,
        executor: concurrent.futures.ThreadPoolExecutor,
    ) -> None:
        self.kind: BackendKind = "sqlite"
        self.leases: Leases | None = None
        self.rates: SharedRates | None = None
        self.path = path
        self._inline = inline
        self._worker = worker
        self._executor = executor
        self._inline_writes = 0
        self._checkpoint: concurrent.futures.Future[None] | None = None
        self._closed = False

    @classmethod
    async def connect(cls, path: Path) -> Database:
        """Open (creating if needed) and migrate the database at ``path``."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory {path.parent}: {exc.strerror}") from exc
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="swarmd-store"
        )
        loop = asyncio.get_running_loop()
        try:
            inline, worker = await loop.run_in_executor(executor, _open_connections, path)
        except BaseException as exc:
            executor.shutdown(wait=False)
            if error := as_store_error(path, exc):
                raise error from exc
            raise
        return cls(path, inline=inline, worker=worker, executor=executor)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._inline.close()
        # Queued behind whatever the thread still has to do; the last connection to close
        # checkpoints the write-ahead log into the file.
        await asyncio.get_running_loop().run_in_executor(self._executor, self._worker.close)
        self._executor.shutdown(wait=False)

    @property
    def name(self) -> str:
        return str(self.path)

    async def schema_version(self) -> int:
        row = await self.read(lambda txn: txn.fetch_one("PRAGMA user_version"), inline=True)
        return int(row[0]) if row else 0

    async def fleet(self, horizon_seconds: float) -> list[dict[str, Any]]:
        """One daemon per file: its heartbeat row says all there is."""
        return []

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store for {self.path} is already closed")

    def data_version(self) -> int:
        """A number that changes whenever a connection other than the inline one commits:
        another process, another ``Database``, or this one's own verbs that ran on its
        thread. A daemon watching it for new work is not woken by its own claims and
        heartbeats.

        It is read on the loop with no busy wait; if the file is busy at that instant, -1
        comes back, which reads as a change: the watcher merely looks once more."""
        self._check_open()
        try:
            row = self._inline.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error as exc:
            if _is_busy(exc):
                return -1
            raise StoreError(describe_failure(self.path, exc)) from exc
        return int(row[0])

    async def write(self, body: Callable[[Transaction], T], *, inline: bool = False) -> T:
        """Run ``body`` in a ``BEGIN IMMEDIATE`` transaction: committed if it returns, rolled
        back if it raises. ``inline`` marks small, bounded work (see the module docstring)."""
        return await self._run(body, _WRITE, inline=inline)

    async def read(
        self, body: Callable[[Transaction], T], *, snapshot: bool = False, inline: bool = False
    ) -> T:
        """Run ``body``, which only reads; with ``snapshot``, its statements all see one
        consistent state."""
        return await self._run(body, _SNAPSHOT if snapshot else _STATEMENTS, inline=inline)

    async def maintain(self, sql: str) -> None:
        """Run one maintenance statement (``PRAGMA incremental_vacuum``, ``VACUUM``) on the
        store's thread, outside any transaction: it may be slow, and it must not be inline."""

        # ``executescript`` steps a statement to its end; ``execute`` steps a statement that
        # returns no rows only once, and ``incremental_vacuum`` frees one page per step.
        def run() -> None:
            self._worker.executescript(sql)

        self._check_open()
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, run)
        except sqlite3.Error as exc:
            if error := as_store_error(self.path, exc):
                raise error from exc
            raise

    async def write_one(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run a single write statement, a transaction of its own; being one statement, it
        runs inline when the write lock is free."""
        return await self._run(lambda txn: txn.fetch(sql, params), _STATEMENT_WRITE, inline=True)

    async def _run(self, body: Callable[[Transaction], T], mode: _Mode, *, inline: bool) -> T:
        self._check_open()
        try:
            if inline:
                result = self._try_inline(body, mode)
                if not isinstance(result, _LockTaken):
                    return result
            return await self._on_thread(body, mode)
        except sqlite3.Error as exc:
            if error := as_store_error(self.path, exc):
                raise error from exc
            raise

    def _try_inline(self, body: Callable[[Transaction], T], mode: _Mode) -> T | _LockTaken:
        if mode.writes and self._checkpoint is not None and not self._checkpoint.done():
            # A checkpoint is queued or running on the thread: writes queue behind it there
            # rather than race it for the write lock, which a loop that keeps writing would
            # win every time, and the log would then grow without end.
            return _LOCK_TAKEN
        try:
            result = _transact(self._inline, body, mode)
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                return _LOCK_TAKEN
            raise
        if mode.writes:
            self._count_inline_write()
        return result

    def _count_inline_write(self) -> None:
        self._inline_writes += 1
        if self._inline_writes < CHECKPOINT_EVERY:
            return
        if self._checkpoint is None or self._checkpoint.done():
            self._inline_writes = 0
            # Not awaited: a concurrent future's ``done()`` needs no turn of the loop, and
            # ``close`` runs on the same thread after it.
            self._checkpoint = self._executor.submit(_checkpoint, self._worker)

    async def _on_thread(self, body: Callable[[Transaction], T], mode: _Mode) -> T:
        return await on_thread(
            self._executor, functools.partial(_transact, self._worker, body, mode)
        )


def _open_connections(path: Path) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """The inline connection, and the worker one (which migrates the file first)."""
    opened: list[sqlite3.Connection] = []
    try:
        worker = _connect(path, busy_timeout_ms=BUSY_TIMEOUT_MS, opened=opened)
        if _user_version(worker) == 0:
            # Only a file with no table yet (and before WAL writes its header) takes this
            # mode: pages freed by pruning are then given back to the file system in steps
            # (``swarmd.store.retention``). On a file that has tables it changes nothing.
            worker.execute("PRAGMA auto_vacuum = INCREMENTAL")
        _enable_wal(worker)
        migrate(worker, path)
        inline = _connect(path, busy_timeout_ms=0, opened=opened)
        # Checkpoints sync the file to disk: they run on the store's thread, not inline.
        inline.execute("PRAGMA wal_autocheckpoint = 0")
    except BaseException:
        for conn in opened:
            conn.close()
        raise
    return inline, worker


def _connect(
    path: Path, *, busy_timeout_ms: int, opened: list[sqlite3.Connection]
) -> sqlite3.Connection:
    # Each connection is used by one thread at a time; the inline one is made here, on the
    # store's thread, and used on the loop's.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    opened.append(conn)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    for pragma in _PRAGMAS:
        conn.execute(pragma)
    return conn


def _checkpoint(conn: sqlite3.Connection) -> None:
    # The checkpoint keeps writers out while it waits for readers, so it waits only
    # briefly; one that cannot finish (a reader of another process holds an old snapshot)
    # or fails is simply tried again after the next batch of writes.
    conn.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
    try:
        with suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(RESTART)")
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def describe_failure(path: Path, exc: sqlite3.Error) -> str:
    """One sentence, naming the file, for a SQLite error that makes the database unusable."""
    message = str(exc)
    lowered = message.lower()
    if "not a database" in lowered:
        return f"{path} is not a SQLite database; move it aside or point SWARMD_HOME elsewhere"
    if "malformed" in lowered or "corrupt" in lowered:
        return f"the database {path} is corrupt ({message}); restore it from a backup"
    if _is_busy(exc):
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


def rollback(conn: sqlite3.Connection) -> None:
    """Undo whatever transaction is open; with nothing to undo, SQLite's complaint is ignored."""
    with suppress(sqlite3.OperationalError):
        conn.execute("ROLLBACK")


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to write-ahead logging (a no-op once any connection has done so)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            # Switching needs the write lock while the statement already holds a read
            # lock; SQLite refuses such an upgrade at once, without the busy handler, when
            # another connection is switching too (only on a brand-new file). Try again
            # until that one is done.
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema up to ``LATEST_VERSION``; refuse a file from a newer swarmd."""
    version = _user_version(conn)
    _check_known_version(path, version)
    if version == LATEST_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have migrated meanwhile.
        version = _user_version(conn)
        _check_known_version(path, version)
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _check_known_version(path: Path, version: int) -> None:
    if version > LATEST_VERSION:
        raise StoreError(
            f"the database {path} has schema version {version}, newer than the {LATEST_VERSION} "
            "this swarmd knows; upgrade swarmd to use it"
        )
