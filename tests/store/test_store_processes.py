"""Two real processes on one database file: one submits, the other drains the queue."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from pathlib import Path

from swarmd.models import TicketState
from swarmd.store import Store

PEER = Path(__file__).parent.parent / "support" / "queue_peer.py"
TICKETS = 200


async def run_peers(*commands: list[str]) -> list[tuple[int, str]]:
    """Start every command at once; return each one's exit code and stderr."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(PEER), *command, stderr=asyncio.subprocess.PIPE
        )
        for command in commands
    ]
    try:
        async with asyncio.timeout(50):
            outputs = await asyncio.gather(*(proc.communicate() for proc in procs))
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    return [
        (proc.returncode or 0, err.decode()) for proc, (_, err) in zip(procs, outputs, strict=True)
    ]


def attempts_per_task(path: Path) -> list[tuple[int, str]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(
            "SELECT COUNT(*), GROUP_CONCAT(exit_reason) FROM attempts GROUP BY task_id"
        ).fetchall()


async def test_a_submitter_and_a_drainer_share_the_queue_without_lock_errors(
    db_path: Path,
) -> None:
    results = await run_peers(
        ["submit", str(db_path), str(TICKETS)], ["drain", str(db_path), str(2 * TICKETS)]
    )
    for code, stderr in results:
        assert "locked" not in stderr
        assert code == 0, stderr
    async with await Store.open(db_path) as store:
        tickets = await store.list_tickets(limit=TICKETS + 1)
        assert len(tickets) == TICKETS
        assert {t.state for t in tickets} == {TicketState.SUCCEEDED}
        assert (await store.queue_depth())["succeeded"] == 2 * TICKETS
    assert attempts_per_task(db_path) == [(1, "ok")] * (2 * TICKETS)
