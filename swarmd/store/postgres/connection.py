"""The store's verbs on PostgreSQL: pooled connections, transactions, leases, wake-ups.

A verb is the same synchronous body the SQLite backend runs (``swarmd.store.backend``); here
it runs on one of the pool's threads, inside ``BEGIN ... COMMIT`` on a pooled connection, its
SQL rewritten by ``dialect``. Why threads and psycopg's blocking API, not its async one: the
verbs are written once, as plain functions over a transaction, and an async backend would
need them all written twice. The event loop never waits on the database either way.

Transactions run at READ COMMITTED. What SQLite got from having one writer at a time is
taken with row locks: a ticket's row (``lock_ticket``) before its tasks change state, an
attempt's row (``hold_attempt``) before it is closed, the claimed task's row with ``SKIP
LOCKED``. A transaction the server aborts as a deadlock or serialisation failure runs again;
one that lost its connection (a restarted server) runs again on a new one, for up to
``reconnect_seconds``, unless it was lost while committing, when its outcome is unknown.

Leases are statements of their own, on a connection of their own (``leases``), so a busy
pool never delays a renewal. Wake-ups come from ``listener``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors
from psycopg.rows import RowMaker

from swarmd.addresses import mask_database_url
from swarmd.errors import StoreError
from swarmd.store.backend import (
    BackendKind,
    LeaseHolder,
    Leases,
    Row,
    SharedRates,
    Transaction,
    on_thread,
)
from swarmd.store.postgres.dialect import to_postgres
from swarmd.store.postgres.leases import FLEET, RUNNING_BY_OWNER, PostgresLeases
from swarmd.store.postgres.limits import RateBuckets
from swarmd.store.postgres.listener import Listener
from swarmd.store.postgres.schema import LATEST_VERSION, MIGRATION_LOCK, MIGRATIONS

T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 10
# TCP keepalives: a connection to a host that vanished is noticed in about 25 s.
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}

LOCK_TICKET = "SELECT id FROM tickets WHERE id = %s FOR UPDATE"
LOCK_TICKET_OF_ATTEMPT = """
    SELECT id FROM tickets
    WHERE id = (SELECT t.ticket_id FROM attempts AS a JOIN tasks AS t ON t.id = a.task_id
                WHERE a.id = %s)
    FOR UPDATE
"""
HOLD_ATTEMPT = """
    SELECT lease_expires_at IS NULL OR lease_expires_at > now()
    FROM attempts WHERE id = %s AND ended_at IS NULL FOR UPDATE
"""
TAKE_LEASE = """
    UPDATE attempts SET lease_owner = %s, lease_host = %s, lease_home = %s,
                        lease_expires_at = now() + make_interval(secs => %s)
    WHERE id = %s
"""


class PostgresRow:
    """A result row, by position or by column name (as ``sqlite3.Row`` reads)."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: Sequence[Any]) -> None:
        self._index = index
        self._values = values

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_maker(cursor: psycopg.Cursor[Any]) -> RowMaker[PostgresRow]:
    names = [column.name for column in cursor.description or ()]
    index = {name: position for position, name in enumerate(names)}
    return functools.partial(PostgresRow, index)


class PostgresTransaction(Transaction):
    """Statements on one connection inside one transaction; SQL in the store's dialect."""

    def __init__(self, cursor: psycopg.Cursor[PostgresRow], lease: LeaseHolder | None) -> None:
        super().__init__()
        self._cursor = cursor
        self._lease = lease

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._cursor.execute(to_postgres(sql), tuple(params))
        return list(self._cursor.fetchall()) if self._cursor.description else []

    def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self._cursor.execute(to_postgres(sql), tuple(params))
        return self._cursor.fetchone() if self._cursor.description else None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(to_postgres(sql), tuple(params))

    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = [tuple(row) for row in rows]
        if batch:
            self._cursor.executemany(to_postgres(sql), batch)

    def lock_ticket(self, ticket_id: int) -> None:
        self._cursor.execute(LOCK_TICKET, (ticket_id,))

    def lock_ticket_of_attempt(self, attempt_id: int) -> None:
        self._cursor.execute(LOCK_TICKET_OF_ATTEMPT, (attempt_id,))

    def hold_attempt(self, attempt_id: int) -> bool:
        self._cursor.execute(HOLD_ATTEMPT, (attempt_id,))
        row = self._cursor.fetchone()
        return row is not None and bool(row[0])

    def take_lease(self, attempt_id: int) -> None:
        if self._lease is None:
            return
        lease = self._lease
        self._cursor.execute(
            TAKE_LEASE, (lease.owner, lease.host, lease.home, lease.seconds, attempt_id)
        )


MAX_CONFLICT_RETRIES = 5
_RETRYABLE = (
    pg_errors.DeadlockDetected,
    pg_errors.SerializationFailure,
    pg_errors.UniqueViolation,
)


class _Abandoned(Exception):
    """Raised on a pool thread to roll back a transaction whose caller was cancelled."""


class _CommitFailed(Exception):
    """The connection was lost while committing: the outcome is unknown."""


def _is_disconnect(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.OperationalError) and not isinstance(
        exc, pg_errors.QueryCanceled | pg_errors.LockNotAvailable
    )


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database, and the threads that use them."""

    kind: BackendKind = "postgresql"

    def __init__(
        self,
        url: str,
        pool: psycopg_pool.ConnectionPool[psycopg.Connection[PostgresRow]],
        executor: concurrent.futures.ThreadPoolExecutor,
        *,
        lease: LeaseHolder | None,
        reconnect_seconds: float,
    ) -> None:
        self.url = url
        self.lease = lease
        self._pool = pool
        self._executor = executor
        self._reconnect_seconds = reconnect_seconds
        self._listener = Listener(url, KEEPALIVES)
        self.leases: Leases | None = (
            PostgresLeases(url, lease, KEEPALIVES) if lease is not None else None
        )
        self.rates: SharedRates | None = RateBuckets(url, KEEPALIVES) if lease is not None else None
        self._closed = False

    @property
    def name(self) -> str:
        return mask_database_url(self.url)

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        lease: LeaseHolder | None = None,
        pool_size: int = 4,
        reconnect_seconds: float = 30.0,
    ) -> PostgresDatabase:
        """Connect, migrating the schema under an advisory lock; ``StoreError`` if it cannot."""
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=pool_size, thread_name_prefix="swarmd-pg"
        )
        loop = asyncio.get_running_loop()
        try:
            pool = await loop.run_in_executor(executor, _open_pool, url, pool_size)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(url, pool, executor, lease=lease, reconnect_seconds=reconnect_seconds)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._listener.close()
        if self.leases is not None:
            await self.leases.close()
        if self.rates is not None:
            await self.rates.close()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._pool.close)
        self._executor.shutdown(wait=False)

    def data_version(self) -> int:
        """A number that changes when another daemon or a CLI made work ready or cancelled it
        (a ``NOTIFY``), after every reconnect of the listener, and at least every few
        seconds (the safety net for a notification lost with a connection)."""
        self._check_open()
        return self._listener.version()

    async def schema_version(self) -> int:
        row = await self.read(lambda txn: txn.fetch_one("SELECT max(version) FROM swarmd_schema"))
        return int(row[0]) if row and row[0] is not None else 0

    async def write(self, body: Callable[[Transaction], T], *, inline: bool = False) -> T:
        return await self._run(body, read_only=False)

    async def read(
        self, body: Callable[[Transaction], T], *, snapshot: bool = False, inline: bool = False
    ) -> T:
        return await self._run(body, read_only=True, snapshot=snapshot)

    async def write_one(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self._run(lambda txn: txn.fetch(sql, params), read_only=False)

    async def maintain(self, sql: str) -> None:
        """SQLite's file maintenance has no counterpart here: autovacuum keeps the tables."""

    async def fleet(self, horizon_seconds: float) -> list[dict[str, Any]]:
        """Every daemon heard from within ``horizon_seconds``, and what each runs."""

        def read(txn: Transaction) -> list[dict[str, Any]]:
            running = txn.fetch(RUNNING_BY_OWNER)
            return [
                {
                    "owner": row["owner"],
                    "host": row["host"],
                    "home": row["home"],
                    "pid": row["pid"],
                    "started_at": row["started_at"],
                    "version": row["version"],
                    "status": json.loads(row["status"]),
                    "heartbeat_age_s": round(float(row["heartbeat_age"]), 1),
                    "running": [
                        f"{task['ticket_id']}/{task['name']}"
                        for task in running
                        if task["lease_owner"] == row["owner"]
                    ],
                }
                for row in txn.fetch(FLEET, (horizon_seconds,))
            ]

        return await self.read(read, snapshot=True)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store for {self.name} is already closed")

    async def _run(
        self, body: Callable[[Transaction], T], *, read_only: bool, snapshot: bool = False
    ) -> T:
        self._check_open()
        return await on_thread(
            self._executor, functools.partial(self._transact, body, read_only, snapshot)
        )

    def _transact(
        self,
        body: Callable[[Transaction], T],
        read_only: bool,
        snapshot: bool,
        abandoned: Callable[[], bool],
    ) -> T:
        deadline = time.monotonic() + self._reconnect_seconds
        pause = 0.05
        conflicts = 0
        while True:
            try:
                return self._transact_once(body, read_only, snapshot, abandoned)
            except _RETRYABLE:
                # Another transaction won a race (a deadlock, or two submits of one
                # idempotency key): run the body again, which sees what the other did.
                conflicts += 1
                if conflicts > MAX_CONFLICT_RETRIES:
                    raise
                time.sleep(pause * conflicts)
            except _CommitFailed as failed:
                raise StoreError(
                    f"the connection to {self.name} was lost while committing; "
                    "the change may or may not have been made"
                ) from failed.__cause__
            except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
                # Anything else (a constraint, a syntax error) is a bug in swarmd, not a
                # property of the database: it keeps its own type, and its traceback.
                if not (_is_disconnect(exc) or isinstance(exc, psycopg_pool.PoolTimeout)):
                    raise StoreError(f"the database {self.name} failed: {_reason(exc)}") from exc
                if time.monotonic() > deadline or abandoned():
                    raise StoreError(
                        f"cannot reach the database {self.name}: {_reason(exc)}"
                    ) from exc
                time.sleep(pause)
                pause = min(pause * 2, 1.0)

    def _transact_once(
        self,
        body: Callable[[Transaction], T],
        read_only: bool,
        snapshot: bool,
        abandoned: Callable[[], bool],
    ) -> T:
        with self._pool.connection(timeout=CONNECT_TIMEOUT_SECONDS) as conn:
            conn.execute(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                if read_only and snapshot
                else ("BEGIN READ ONLY" if read_only else "BEGIN")
            )
            try:
                with conn.cursor(row_factory=_row_maker) as cursor:
                    txn = PostgresTransaction(cursor, self.lease)
                    result = body(txn)
                    txn.flush()
                if abandoned():
                    raise _Abandoned
            except BaseException:
                if not conn.broken:
                    conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except psycopg.OperationalError as exc:
                raise _CommitFailed from exc
            return result


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.autocommit = True


def _open_pool(url: str, size: int) -> psycopg_pool.ConnectionPool[psycopg.Connection[PostgresRow]]:
    """Open the pool and migrate, or raise ``StoreError`` naming the masked URL."""
    shown = mask_database_url(url)
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS, **KEEPALIVES) as conn:
            migrate(conn, shown)
    except psycopg.Error as exc:
        raise StoreError(f"cannot use the database {shown}: {_reason(exc)}") from exc
    pool: psycopg_pool.ConnectionPool[psycopg.Connection[PostgresRow]] = (
        psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=size,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_SECONDS, **KEEPALIVES},
            configure=_configure,
            open=False,
            name="swarmd",
        )
    )
    pool.open(wait=False)
    return pool


def migrate(conn: psycopg.Connection[Any], shown: str) -> None:
    """Bring the schema up to ``LATEST_VERSION`` under an advisory lock; refuse a newer one."""
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS swarmd_schema "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT max(version) FROM swarmd_schema").fetchone()
        version = int(row[0]) if row and row[0] is not None else 0
        if version > LATEST_VERSION:
            raise StoreError(
                f"the database {shown} has schema version {version}, newer than the "
                f"{LATEST_VERSION} this swarmd knows; upgrade swarmd to use it"
            )
        for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
            with conn.transaction():
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO swarmd_schema (version) VALUES (%s)", (number,))
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


def probe(url: str) -> tuple[str, int]:
    """The server's version and the schema version of the database, without migrating it:
    what ``swarmd doctor`` shows. ``StoreError`` when it cannot connect."""
    shown = mask_database_url(url)
    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            server = str(row[0]) if row else "unknown"
            found = conn.execute("SELECT to_regclass('swarmd_schema') IS NOT NULL").fetchone()
            schema = 0
            if found and found[0]:
                latest = conn.execute("SELECT max(version) FROM swarmd_schema").fetchone()
                schema = int(latest[0]) if latest and latest[0] is not None else 0
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to the database {shown}: {_reason(exc)}") from exc
    return server, schema
