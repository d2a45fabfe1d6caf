"""Leases: how a fleet knows which daemon runs which attempt, and takes back a dead one's.

A pid means nothing on another host. Each attempt a daemon claims carries its lease (the
daemon's ``owner`` id, its host and home, and an expiry computed by the database's clock,
never a host's). The daemon renews all its leases in one statement per heartbeat, naming the
attempts it really runs; any daemon's reaper returns the attempts whose lease expired to
``ready`` as interrupted, in one statement. A completion whose lease expired is refused
(``PostgresTransaction.hold_attempt``), and the attempt row lock makes the reaper and a late
completion take turns, so exactly one of them closes the attempt.

These statements run on a connection of their own, outside the pool, so that a pool busy
with long verbs never delays a renewal; and they fail fast instead of waiting for a server
that is gone: the daemon must learn in time that it can no longer renew (and fence itself).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg

from swarmd.store.backend import LeaseHolder
from swarmd.store.postgres.dedicated import DedicatedConnection

RENEW = """
    UPDATE attempts SET lease_expires_at = now() + make_interval(secs => %s)
    WHERE lease_owner = %s AND ended_at IS NULL AND lease_expires_at > now()
      AND token = ANY(%s)
    RETURNING token
"""

# One statement: close the expired attempts, put their tasks back to ready (a task cancelled
# meanwhile stays cancelled), and log each as interrupted.
REAP = """
    WITH expired AS (
        UPDATE attempts
        SET ended_at = %(at)s, exit_reason = 'interrupted',
            error = 'its lease expired: the daemon running it stopped renewing it'
        WHERE ended_at IS NULL AND lease_expires_at < now()
        RETURNING id, task_id, lease_owner, lease_host
    ), moved AS (
        UPDATE tasks SET state = 'ready', retry_at = NULL
        FROM expired
        WHERE tasks.id = expired.task_id AND tasks.state = 'running'
          AND tasks.current_attempt_id = expired.id
        RETURNING tasks.id, tasks.ticket_id, expired.lease_owner, expired.lease_host
    ), logged AS (
        INSERT INTO events (at, ticket_id, task_id, kind, detail)
        SELECT %(at)s, ticket_id, id, 'task_interrupted',
               json_build_object('reason', 'interrupted', 'error', 'its lease expired',
                                 'owner', lease_owner, 'host', lease_host)::text
        FROM moved
    )
    SELECT id FROM moved
"""

# What a previous daemon of this home left open: its processes are on this host.
LEFT_BY_THIS_HOME = """
    SELECT id FROM attempts
    WHERE ended_at IS NULL AND lease_host = %s AND lease_home = %s AND lease_owner != %s
"""

WRITE_DAEMON = """
    INSERT INTO daemons (owner, host, home, pid, started_at, heartbeat_at, version, status)
    VALUES (%s, %s, %s, %s, %s, now(), %s, %s)
    ON CONFLICT (owner) DO UPDATE SET
        heartbeat_at = now(), version = excluded.version, status = excluded.status
"""

CLEAR_DAEMON = "DELETE FROM daemons WHERE owner = %s"

# For ``status``, in the store's dialect: every daemon heard from recently (how long ago,
# by the database's clock), and which daemon runs which task.
FLEET = """
    SELECT owner, host, home, pid, started_at, version, status,
           extract(epoch FROM now() - heartbeat_at) AS heartbeat_age
    FROM daemons
    WHERE heartbeat_at > now() - make_interval(secs => ?)
    ORDER BY host, home
"""

RUNNING_BY_OWNER = """
    SELECT t.ticket_id, t.name, a.lease_owner
    FROM attempts AS a JOIN tasks AS t ON t.id = a.task_id
    WHERE a.ended_at IS NULL
    ORDER BY a.id
"""

STATEMENT_TIMEOUT_MS = 5000


class PostgresLeases:
    """The lease statements of one daemon, on their own connection and thread."""

    def __init__(self, url: str, lease: LeaseHolder, keepalives: dict[str, Any]) -> None:
        self.holder = lease
        self._connection = DedicatedConnection(
            url,
            keepalives,
            name="leases",
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        )

    async def renew(self, tokens: Sequence[str]) -> set[str]:
        """Extend the leases of ``tokens`` (the attempts this daemon runs); returns those it
        still holds. One missing was reaped: its worker must stop."""
        lease = self.holder
        rows = await self._run(RENEW, (lease.seconds, lease.owner, list(tokens)))
        return {str(row[0]) for row in rows}

    async def reap(self, at: float) -> list[int]:
        """Return every attempt whose lease expired to ready; the ids of the tasks moved."""
        rows = await self._run(REAP, {"at": at})
        return [int(row[0]) for row in rows]

    async def left_by_this_home(self) -> set[int]:
        """Open attempts a previous daemon of this home left (its processes are here)."""
        lease = self.holder
        rows = await self._run(LEFT_BY_THIS_HOME, (lease.host, lease.home, lease.owner))
        return {int(row[0]) for row in rows}

    async def beat(self, *, pid: int, started_at: float, version: str, status: Any) -> None:
        lease = self.holder
        await self._run(
            WRITE_DAEMON,
            (lease.owner, lease.host, lease.home, pid, started_at, version, json.dumps(status)),
        )

    async def leave(self) -> None:
        await self._run(CLEAR_DAEMON, (self.holder.owner,))

    async def close(self) -> None:
        await self._connection.close()

    async def _run(self, sql: str, params: Any) -> list[tuple[Any, ...]]:
        def step(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            cursor = conn.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []

        return await self._connection.run(step)
