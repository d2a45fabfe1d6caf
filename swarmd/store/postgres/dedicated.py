"""A connection of its own, on a thread of its own: for the statements that must not wait
behind the pool (a daemon's lease renewals, the fleet's rate-limit slots).

Each statement is its own transaction. One that fails because the server dropped the
connection (a restart) runs once more on a new one; any other failure is a ``StoreError``
at once, so the caller learns in time that the database is out of reach.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from swarmd.addresses import mask_database_url
from swarmd.errors import StoreError

T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 3


class DedicatedConnection:
    """Runs ``step(connection)`` calls one at a time, reconnecting as needed."""

    def __init__(
        self, url: str, keepalives: dict[str, Any], *, name: str, options: str = ""
    ) -> None:
        self._url = url
        self._keepalives = keepalives
        self._options = options
        self._conn: psycopg.Connection[Any] | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"swarmd-{name}"
        )

    async def run(self, step: Callable[[psycopg.Connection[Any]], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._execute, step)

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=False)

    def _execute(self, step: Callable[[psycopg.Connection[Any]], T]) -> T:
        try:
            try:
                return step(self._connection())
            except psycopg.OperationalError:
                if self._conn is not None and not self._conn.broken:
                    raise
                return step(self._connection())  # the server dropped it: once more
        except psycopg.Error as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StoreError(
                f"cannot reach the database {mask_database_url(self._url)}: {reason}"
            ) from exc

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                options=self._options,
                **self._keepalives,
            )
        return self._conn
