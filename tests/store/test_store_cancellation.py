"""A verb cancelled at any point leaves the database consistent and the store usable."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from swarmd.models import TaskState
from swarmd.store import Store
from tests.support.builders import claim, ticket
from tests.support.postgres import query

TASKS_WITHOUT_THEIR_ATTEMPT = """
    SELECT t.id FROM tasks AS t LEFT JOIN attempts AS a
      ON a.id = t.current_attempt_id AND a.ended_at IS NULL
    WHERE (t.state = 'running') != (a.id IS NOT NULL)
"""


def inconsistent_tasks(location: Path | str) -> list[int]:
    return [int(str(task_id)) for (task_id,) in query(location, TASKS_WITHOUT_THEIR_ATTEMPT)]


async def cancel_after(steps: int, verb: Callable[[], Awaitable[object]]) -> None:
    """Run ``verb`` and cancel it after ``steps`` turns of the event loop."""
    running = asyncio.ensure_future(verb())
    for _ in range(steps):
        await asyncio.sleep(0)
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running


@pytest.mark.parametrize("steps", range(0, 40, 3))
async def test_a_cancelled_claim_is_all_or_nothing(
    store: Store, store_location: Path | str, steps: int
) -> None:
    submitted = await store.submit_ticket(ticket("a", "b"))
    await cancel_after(steps, store.claim_ready_task)
    assert inconsistent_tasks(store_location) == []
    await claim(store)  # the store still works
    assert inconsistent_tasks(store_location) == []
    assert (await store.queue_depth())["running"] in (1, 2)
    assert (await store.get_ticket(submitted.ticket_id)).state.value == "running"


@pytest.mark.parametrize("steps", range(0, 40, 3))
async def test_a_cancelled_completion_is_all_or_nothing(
    store: Store, store_location: Path | str, steps: int
) -> None:
    submitted = await store.submit_ticket(ticket("a"))
    claimed = await claim(store)
    await cancel_after(steps, lambda: store.complete_attempt(claimed.attempt.token))
    assert inconsistent_tasks(store_location) == []
    task = await store.get_task(submitted.ticket_id, "a")
    if task.state is TaskState.RUNNING:
        await store.complete_attempt(claimed.attempt.token)
    assert (await store.get_ticket(submitted.ticket_id)).state.value == "succeeded"
