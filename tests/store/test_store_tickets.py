"""Cancel and retry of tickets and single tasks, and the ticket's derived state."""

from __future__ import annotations

import pytest

from swarmd.errors import InvalidTransitionError, NotFoundError
from swarmd.models import ExitReason, TaskState, TicketState
from swarmd.store import Store
from tests.support.builders import claim, diamond, states, succeed, task, ticket
from tests.support.clock import FakeClock


async def ticket_state(store: Store, ticket_id: int) -> TicketState:
    return (await store.get_ticket(ticket_id)).state


# -- derived state -------------------------------------------------------------------------


async def test_ticket_is_queued_until_a_task_is_claimed_then_running(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a", "b"))
    assert await ticket_state(store, submitted.ticket_id) is TicketState.QUEUED
    await succeed(store, "a")
    assert await ticket_state(store, submitted.ticket_id) is TicketState.RUNNING


async def test_ticket_succeeds_with_its_last_task(store: Store, clock: FakeClock) -> None:
    submitted = await store.submit_ticket(ticket("a", "b"))
    await succeed(store, "a")
    last = await claim(store, "b")
    clock.advance(7)
    outcome = await store.complete_attempt(last.attempt.token)
    assert outcome.ticket_state is TicketState.SUCCEEDED
    finished = await store.get_ticket(submitted.ticket_id)
    assert (finished.state, finished.finished_at) == (TicketState.SUCCEEDED, clock.now)


async def test_ticket_fails_when_a_task_dies_and_the_rest_finish(store: Store) -> None:
    submitted = await store.submit_ticket(ticket(task("a", max_attempts=1), "b"))
    claimed = await claim(store, "a")
    outcome = await store.fail_attempt(claimed.attempt.token, reason=ExitReason.ERROR, error="x")
    assert outcome.ticket_state is None  # b is still ready
    assert await ticket_state(store, submitted.ticket_id) is TicketState.RUNNING
    last = await succeed(store, "b")
    assert last.task.name == "b"
    assert await ticket_state(store, submitted.ticket_id) is TicketState.FAILED


async def test_ticket_fails_when_its_only_chain_dies(store: Store) -> None:
    await store.submit_ticket(ticket(task("a", max_attempts=1), task("b", "a")))
    claimed = await claim(store, "a")
    outcome = await store.fail_attempt(claimed.attempt.token, reason=ExitReason.ERROR, error="x")
    assert outcome.ticket_state is TicketState.FAILED


async def test_ticket_is_cancelled_when_cancelled_and_none_died(store: Store) -> None:
    submitted = await store.submit_ticket(diamond())
    await succeed(store, "top")
    await store.cancel(submitted.ticket_id, "left")
    await succeed(store, "right")
    assert await states(store, submitted.ticket_id) == {
        "top": "succeeded",
        "left": "cancelled",
        "right": "succeeded",
        "bottom": "skipped",
    }
    assert await ticket_state(store, submitted.ticket_id) is TicketState.CANCELLED


async def test_a_dead_task_makes_the_ticket_failed_even_when_another_was_cancelled(
    store: Store,
) -> None:
    submitted = await store.submit_ticket(ticket(task("a", max_attempts=1), "b"))
    claimed = await claim(store, "a")
    await store.cancel(submitted.ticket_id, "b")
    await store.fail_attempt(claimed.attempt.token, reason=ExitReason.ERROR, error="x")
    assert await ticket_state(store, submitted.ticket_id) is TicketState.FAILED


# -- cancel --------------------------------------------------------------------------------


async def test_cancelling_a_ticket_cancels_every_unfinished_task(store: Store) -> None:
    submitted = await store.submit_ticket(diamond())
    await succeed(store, "top")
    running = await claim(store, "left")
    cancelled = await store.cancel(submitted.ticket_id)
    assert sorted(t.name for t in cancelled) == ["bottom", "left", "right"]
    assert all(t.state is TaskState.CANCELLED for t in cancelled)
    assert await ticket_state(store, submitted.ticket_id) is TicketState.CANCELLED
    assert await store.current_tokens([running.attempt.token]) == set()


async def test_cancelling_one_task_skips_what_needs_it_and_nothing_else(store: Store) -> None:
    submitted = await store.submit_ticket(diamond())
    await succeed(store, "top")
    [cancelled] = await store.cancel(submitted.ticket_id, "left")
    assert cancelled.name == "left"
    assert await states(store, submitted.ticket_id) == {
        "top": "succeeded",
        "left": "cancelled",
        "right": "ready",
        "bottom": "skipped",
    }
    bottom = await store.get_task(submitted.ticket_id, "bottom")
    assert bottom.last_error == f"needs {submitted.ticket_id}.left, which was cancelled"
    assert await ticket_state(store, submitted.ticket_id) is TicketState.RUNNING


async def test_cancelling_a_finished_ticket_is_refused(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a"))
    await store.cancel(submitted.ticket_id)
    with pytest.raises(InvalidTransitionError, match=f"ticket {submitted.ticket_id} is already"):
        await store.cancel(submitted.ticket_id)


async def test_cancelling_an_unknown_ticket_or_task_is_not_found(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a"))
    with pytest.raises(NotFoundError, match="no ticket 77"):
        await store.cancel(77)
    with pytest.raises(NotFoundError, match="has no task named 'zzz'"):
        await store.cancel(submitted.ticket_id, "zzz")


# -- retry ---------------------------------------------------------------------------------


async def test_retrying_a_ticket_revives_all_its_broken_tasks(store: Store) -> None:
    submitted = await store.submit_ticket(
        ticket(task("a", max_attempts=1), task("b", "a"), "c", "d")
    )
    claimed = await claim(store, "a")
    await store.fail_attempt(claimed.attempt.token, reason=ExitReason.ERROR, error="x")
    await store.cancel(submitted.ticket_id, "c")
    await succeed(store, "d")
    assert await ticket_state(store, submitted.ticket_id) is TicketState.FAILED
    revived = await store.retry(submitted.ticket_id)
    assert {t.name: t.state for t in revived} == {
        "a": TaskState.READY,
        "b": TaskState.BLOCKED,
        "c": TaskState.READY,
    }
    reopened = await store.get_ticket(submitted.ticket_id)
    assert (reopened.state, reopened.finished_at) == (TicketState.RUNNING, None)
    await succeed(store, "a")
    await succeed(store, "b")
    await succeed(store, "c")
    assert await ticket_state(store, submitted.ticket_id) is TicketState.SUCCEEDED


async def test_retrying_a_ticket_that_never_started_makes_it_queued_again(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a"))
    await store.cancel(submitted.ticket_id)
    await store.retry(submitted.ticket_id)
    assert await ticket_state(store, submitted.ticket_id) is TicketState.QUEUED


async def test_retrying_one_task_revives_its_skipped_dependents_as_blocked(store: Store) -> None:
    spec = ticket(task("a", max_attempts=1), task("b", "a"), task("c", "b"), "other")
    submitted = await store.submit_ticket(spec)
    claimed = await claim(store, "a")
    await store.fail_attempt(claimed.attempt.token, reason=ExitReason.ERROR, error="x")
    revived = await store.retry(submitted.ticket_id, "a")
    assert {t.name: t.state for t in revived} == {
        "a": TaskState.READY,
        "b": TaskState.BLOCKED,
        "c": TaskState.BLOCKED,
    }
    assert revived[0].failures == 0


async def test_retrying_one_task_leaves_dependents_that_another_broken_need_blocks(
    store: Store,
) -> None:
    spec = ticket(task("a", max_attempts=1), task("b", max_attempts=1), task("c", "a", "b"))
    submitted = await store.submit_ticket(spec)
    first, second = await claim(store, "a"), await claim(store, "b")
    await store.fail_attempt(first.attempt.token, reason=ExitReason.ERROR, error="x")
    await store.fail_attempt(second.attempt.token, reason=ExitReason.ERROR, error="x")
    revived = await store.retry(submitted.ticket_id, "a")
    assert [t.name for t in revived] == ["a"]
    assert (await store.get_task(submitted.ticket_id, "c")).state is TaskState.SKIPPED
    revived = await store.retry(submitted.ticket_id, "b")
    assert {t.name: t.state for t in revived} == {"b": TaskState.READY, "c": TaskState.BLOCKED}


async def test_retrying_a_task_whose_need_is_broken_is_refused(store: Store) -> None:
    submitted = await store.submit_ticket(ticket(task("a", max_attempts=1), task("b", "a")))
    claimed = await claim(store, "a")
    await store.fail_attempt(claimed.attempt.token, reason=ExitReason.ERROR, error="x")
    with pytest.raises(InvalidTransitionError, match=r"needs \d+\.a, which is dead; retry that"):
        await store.retry(submitted.ticket_id, "b")


async def test_retrying_a_ticket_with_nothing_broken_is_refused(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a"))
    await succeed(store, "a")
    with pytest.raises(InvalidTransitionError, match="has nothing to retry"):
        await store.retry(submitted.ticket_id)


async def test_retrying_an_unknown_ticket_or_task_is_not_found(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a"))
    with pytest.raises(NotFoundError):
        await store.retry(5)
    with pytest.raises(NotFoundError):
        await store.retry(submitted.ticket_id, "nope")


async def test_retrying_a_waiting_failed_task_makes_it_ready_at_once(
    store: Store, clock: FakeClock
) -> None:
    submitted = await store.submit_ticket(ticket(task("a", max_attempts=3)))
    claimed = await claim(store)
    await store.fail_attempt(claimed.attempt.token, reason=ExitReason.ERROR, error="x")
    [revived] = await store.retry(submitted.ticket_id, "a")
    assert (revived.state, revived.failures, revived.retry_at) == (TaskState.READY, 0, None)
    assert await store.next_retry_at() is None
