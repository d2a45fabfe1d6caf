"""A fleet's rate limit: one bucket row per provider, shared by every daemon.

The in-memory limiter (``swarmd.llm.limits.RateLimiter``) spaces one daemon's requests; a
fleet must space all of them, so the same algorithm (a GCRA: the theoretical arrival time of
the next request) lives in a row, and each request takes its slot with one atomic
``UPDATE``, on the database's clock. A 429's Retry-After pauses the provider in the same row:
every daemon's next request sees it. Charged per request, not per task.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg

from swarmd.store.postgres.dedicated import DedicatedConnection

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
        self._connection = DedicatedConnection(url, keepalives, name="rates")
        self._known: set[str] = set()

    async def take(self, key: str, *, interval: float, burst: int, max_wait: float) -> Slot:
        """Take the next slot of ``key``'s bucket if it can be had within ``max_wait``."""
        params = {
            "key": key,
            "interval": interval,
            "burst_span": (burst - 1) * interval,
            "max_wait": max(0.0, max_wait),
        }

        def take(conn: psycopg.Connection[Any]) -> Slot:
            self._ensure(conn, key)
            row = conn.execute(TAKE, params).fetchone()
            if row is not None:
                return Slot(delay=float(row[0]))
            refusal = conn.execute(REFUSAL, params).fetchone()
            if refusal is not None and refusal[0] is not None and float(refusal[0]) > 0:
                return Slot(delay=None, paused_s=float(refusal[0]))
            return Slot(delay=None, wait_s=float(refusal[1]) if refusal else 0.0)

        return await self._connection.run(take)

    async def pause(self, key: str, seconds: float) -> None:
        """Pause ``key`` for every daemon for ``seconds`` (a Retry-After)."""

        def pause(conn: psycopg.Connection[Any]) -> None:
            self._ensure(conn, key)
            conn.execute(PAUSE, {"key": key, "seconds": max(0.0, seconds)})

        await self._connection.run(pause)

    async def close(self) -> None:
        await self._connection.close()

    def _ensure(self, conn: psycopg.Connection[Any], key: str) -> None:
        if key not in self._known:
            conn.execute(ENSURE, (key,))
            self._known.add(key)
