"""A fleet's rate limit: one bucket row per provider, shared by every daemon.

The in-memory limiter (``swarmd.llm.limits.RateLimiter``) spaces one daemon's requests; a
fleet must space all of them, so the same algorithm (a GCRA: the theoretical arrival time of
the next request) lives in a row, and each request takes its slot with one atomic
``UPDATE``, on the database's clock. A 429's Retry-After pauses the provider in the same row:
every daemon's next request sees it. Charged per request, not per task.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from typing import Any

import psycopg

from swarmd.addresses import mask_database_url
from swarmd.errors import StoreError

ENSURE = "INSERT INTO rate_buckets (provider) VALUES (%s) ON CONFLICT DO NOTHING"

# The slot: granted when the wait it implies fits the caller's budget and no pause holds.
TAKE = """
    WITH clock AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now)
    UPDATE rate_buckets AS b
    SET tat = GREATEST(b.tat, clock.now) + %(interval)s
    FROM clock
    WHERE b.provider = %(key)s
      AND (b.paused_until IS NULL OR b.paused_until <= clock.now)
      AND GREATEST(b.tat, clock.now) - %(burst_span)s - clock.now <= %(max_wait)s
    RETURNING GREATEST(b.tat - %(interval)s - %(burst_span)s - clock.now, 0)
"""

# Why no slot: the pause left, or the wait a slot would take.
REFUSAL = """
    SELECT b.paused_until - c.now, GREATEST(b.tat, c.now) - %(burst_span)s - c.now
    FROM rate_buckets AS b, (SELECT extract(epoch FROM clock_timestamp())::float8 AS now) AS c
    WHERE b.provider = %(key)s
"""

PAUSE = """
    UPDATE rate_buckets
    SET paused_until = GREATEST(COALESCE(paused_until, 0),
                                extract(epoch FROM clock_timestamp()) + %(seconds)s)
    WHERE provider = %(key)s
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Slot:
    """A take's answer: ``delay`` before the granted request may go, or a refusal: the
    provider is paused for ``paused_s`` more, or the wait (``wait_s``) is past the budget."""

    delay: float | None
    paused_s: float | None = None
    wait_s: float | None = None


class RateBuckets:
    """The fleet's buckets, on a connection and thread of their own."""

    def __init__(self, url: str, keepalives: dict[str, Any]) -> None:
        self._url = url
        self._keepalives = keepalives
        self._conn: psycopg.Connection[Any] | None = None
        self._known: set[str] = set()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="swarmd-rates"
        )

    async def take(self, key: str, *, interval: float, burst: int, max_wait: float) -> Slot:
        """Take the next slot of ``key``'s bucket if it can be had within ``max_wait``."""
        params = {
            "key": key,
            "interval": interval,
            "burst_span": (burst - 1) * interval,
            "max_wait": max(0.0, max_wait),
        }
        return await self._run(self._take, params)

    async def pause(self, key: str, seconds: float) -> None:
        """Pause ``key`` for every daemon for ``seconds`` (a Retry-After)."""
        await self._run(self._pause, {"key": key, "seconds": max(0.0, seconds)})

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=False)

    def _take(self, conn: psycopg.Connection[Any], params: dict[str, Any]) -> Slot:
        if params["key"] not in self._known:
            conn.execute(ENSURE, (params["key"],))
            self._known.add(params["key"])
        row = conn.execute(TAKE, params).fetchone()
        if row is not None:
            return Slot(delay=float(row[0]))
        refusal = conn.execute(REFUSAL, params).fetchone()
        if refusal is not None and refusal[0] is not None and float(refusal[0]) > 0:
            return Slot(delay=None, paused_s=float(refusal[0]))
        return Slot(delay=None, wait_s=float(refusal[1]) if refusal else 0.0)

    def _pause(self, conn: psycopg.Connection[Any], params: dict[str, Any]) -> Slot:
        if params["key"] not in self._known:
            conn.execute(ENSURE, (params["key"],))
            self._known.add(params["key"])
        conn.execute(PAUSE, params)
        return Slot(delay=0.0)

    async def _run(self, step: Any, params: dict[str, Any]) -> Slot:
        loop = asyncio.get_running_loop()
        result: Slot = await loop.run_in_executor(self._executor, self._execute, step, params)
        return result

    def _execute(self, step: Any, params: dict[str, Any]) -> Slot:
        for tries_left in (1, 0):
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._conn = psycopg.connect(
                        self._url, autocommit=True, connect_timeout=3, **self._keepalives
                    )
                result: Slot = step(self._conn, params)
                return result
            except psycopg.OperationalError as exc:
                if tries_left and self._conn is not None and self._conn.broken:
                    continue  # a dropped connection (a restart): once more, on a new one
                raise _unreachable(self._url, exc) from exc
            except psycopg.Error as exc:
                raise _unreachable(self._url, exc) from exc
        raise AssertionError("unreachable")


def _unreachable(url: str, exc: BaseException) -> StoreError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return StoreError(f"cannot reach the database {mask_database_url(url)}: {reason}")
