"""A second process for the store's concurrency test: it submits tickets or drains the queue.

python queue_peer.py submit DB COUNT    # COUNT tickets of two tasks, b needing a
python queue_peer.py drain DB TASKS     # claim and complete until TASKS are done
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from swarmd.models import TaskSpec, TicketSpec
from swarmd.store import Store

DEADLINE_SECONDS = 120.0
TWO_TASKS = (TaskSpec(name="a"), TaskSpec(name="b", needs=("a",)))


async def submit(path: Path, count: int) -> None:
    async with await Store.open(path) as store:
        for i in range(count):
            await store.submit_ticket(
                TicketSpec(title=f"peer {i}", tasks=TWO_TASKS), key=f"peer-{i}"
            )


async def drain(path: Path, expected: int) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    completed = 0
    async with await Store.open(path) as store:
        while completed < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"drained only {completed} of {expected} tasks in time")
            claimed = await store.claim_ready_task()
            if claimed is None:
                await wait_for_a_commit(store, deadline)
                continue
            await store.complete_attempt(claimed.attempt.token)
            completed += 1


async def wait_for_a_commit(store: Store, deadline: float) -> None:
    # The daemon's way of noticing new work: poll the cheap data_version counter.
    seen = store.data_version()
    while time.monotonic() < deadline:
        if store.data_version() != seen:
            return
        await asyncio.sleep(0.005)


if __name__ == "__main__":
    verb, db, number = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    asyncio.run(submit(db, number) if verb == "submit" else drain(db, number))
