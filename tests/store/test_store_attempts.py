"""Attempts: fencing tokens, interruptions, spawn records, and what crash recovery reads."""

from __future__ import annotations

import pytest

from swarmd.errors import StaleAttemptError
from swarmd.models import ExitReason, TaskState
from swarmd.store import Store
from tests.support.builders import claim, task, ticket
from tests.support.clock import FakeClock


async def test_each_claim_gets_a_fresh_token(store: Store) -> None:
    await store.submit_ticket(ticket("a", "b"))
    first, second = await claim(store), await claim(store)
    for claimed in (first, second):
        attempt_id, secret = claimed.attempt.token.split(".")
        assert (int(attempt_id), len(secret)) == (claimed.attempt.id, 32)
    assert first.attempt.token != second.attempt.token


async def test_a_token_with_the_right_attempt_id_but_a_forged_secret_is_refused(
    store: Store,
) -> None:
    await store.submit_ticket(ticket("a"))
    claimed = await claim(store)
    forged = f"{claimed.attempt.id}.{'0' * 32}"
    with pytest.raises(StaleAttemptError):
        await store.complete_attempt(forged)
    with pytest.raises(StaleAttemptError):
        await store.record_spawn(forged, pid=1, pid_create_time=0.0)
    assert await store.current_tokens([forged, claimed.attempt.token]) == {claimed.attempt.token}
    outcome = await store.complete_attempt(claimed.attempt.token)
    assert outcome.task.state is TaskState.SUCCEEDED


async def test_a_token_from_before_a_retry_can_neither_complete_nor_fail(
    store: Store, clock: FakeClock
) -> None:
    submitted = await store.submit_ticket(ticket("a"))
    old = await claim(store)
    failed = await store.fail_attempt(old.attempt.token, reason=ExitReason.ERROR, error="x")
    assert failed.task.retry_at is not None
    clock.now = failed.task.retry_at
    await store.release_due_retries()
    new = await claim(store)
    before = await store.events()
    with pytest.raises(StaleAttemptError):
        await store.complete_attempt(old.attempt.token)
    with pytest.raises(StaleAttemptError):
        await store.fail_attempt(old.attempt.token, reason=ExitReason.ERROR, error="late")
    assert await store.events() == before
    assert (await store.get_task(submitted.ticket_id, "a")).state is TaskState.RUNNING
    await store.complete_attempt(new.attempt.token)


async def test_a_token_from_before_an_interruption_is_refused(store: Store) -> None:
    await store.submit_ticket(ticket("a"))
    old = await claim(store)
    await store.interrupt_attempt(old.attempt.token)
    new = await claim(store)
    assert new.attempt.number == 2
    with pytest.raises(StaleAttemptError):
        await store.complete_attempt(old.attempt.token)
    with pytest.raises(StaleAttemptError):
        await store.interrupt_attempt(old.attempt.token)
    attempts = await store.list_attempts(new.task.id)
    assert [a.ended_at is None for a in attempts] == [False, True]


async def test_an_attempt_cannot_be_closed_twice(store: Store) -> None:
    await store.submit_ticket(ticket("a"))
    claimed = await claim(store)
    await store.complete_attempt(claimed.attempt.token)
    with pytest.raises(StaleAttemptError, match="not the open attempt"):
        await store.complete_attempt(claimed.attempt.token)


@pytest.mark.parametrize("token", ["0" * 32, "7.abc", ".abc", "x.abc", "", "١.abc"])
async def test_an_unknown_token_is_refused(store: Store, token: str) -> None:
    await store.submit_ticket(ticket("a"))
    await claim(store)
    with pytest.raises(StaleAttemptError):
        await store.fail_attempt(token, reason=ExitReason.ERROR, error="x")


async def test_an_interruption_does_not_count_as_a_failure(store: Store) -> None:
    submitted = await store.submit_ticket(ticket(task("a", max_attempts=1)))
    for _ in range(3):
        claimed = await claim(store)
        await store.interrupt_attempt(claimed.attempt.token)
    stored = await store.get_task(submitted.ticket_id, "a")
    assert (stored.state, stored.failures) == (TaskState.READY, 0)
    claimed = await claim(store)
    assert claimed.attempt.number == 4
    outcome = await store.fail_attempt(claimed.attempt.token, reason=ExitReason.ERROR, error="x")
    assert outcome.task.state is TaskState.DEAD


async def test_closing_the_attempt_of_a_cancelled_task_leaves_the_task_cancelled(
    store: Store,
) -> None:
    submitted = await store.submit_ticket(ticket("a"))
    claimed = await claim(store)
    await store.cancel(submitted.ticket_id)
    outcome = await store.interrupt_attempt(claimed.attempt.token, reason=ExitReason.CANCELLED)
    assert outcome.task.state is TaskState.CANCELLED
    [attempt] = await store.list_attempts(claimed.task.id)
    assert attempt.exit_reason is ExitReason.CANCELLED
    assert await store.running_attempts() == []


@pytest.mark.parametrize("verb", ["complete", "fail"])
async def test_a_result_arriving_after_a_cancel_only_closes_the_attempt(
    store: Store, verb: str
) -> None:
    submitted = await store.submit_ticket(ticket("a"))
    claimed = await claim(store)
    await store.cancel(submitted.ticket_id)
    token = claimed.attempt.token
    if verb == "complete":
        outcome = await store.complete_attempt(token)
    else:
        outcome = await store.fail_attempt(token, reason=ExitReason.ERROR, error="x")
    assert (outcome.task.state, outcome.task.failures) == (TaskState.CANCELLED, 0)
    assert (await store.get_ticket(submitted.ticket_id)).state.value == "cancelled"
    assert await store.running_attempts() == []


async def test_a_retry_closes_the_attempt_a_cancel_left_open(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a"))
    old = await claim(store)
    await store.cancel(submitted.ticket_id)
    await store.retry(submitted.ticket_id)
    [attempt] = await store.list_attempts(old.task.id)
    assert attempt.exit_reason is ExitReason.CANCELLED
    assert attempt.error == "superseded by a retry"
    with pytest.raises(StaleAttemptError):
        await store.interrupt_attempt(old.attempt.token)


async def test_current_tokens_drops_the_token_of_a_cancelled_task(store: Store) -> None:
    first = await store.submit_ticket(ticket("a"))
    await store.submit_ticket(ticket("b"))
    a, b = await claim(store, "a"), await claim(store, "b")
    tokens = {a.attempt.token, b.attempt.token, "f" * 32}
    assert await store.current_tokens(tokens) == {a.attempt.token, b.attempt.token}
    await store.cancel(first.ticket_id)
    assert await store.current_tokens(tokens) == {b.attempt.token}
    assert await store.current_tokens([]) == set()


async def test_record_spawn_is_kept_for_crash_recovery(store: Store) -> None:
    await store.submit_ticket(ticket("a", "b"))
    running = await claim(store, "a")
    await claim(store, "b")
    await store.record_spawn(running.attempt.token, pid=4242, pid_create_time=1234.5)
    recovered = await store.running_attempts()
    assert [(t.name, a.pid, a.pid_create_time) for t, a in recovered] == [
        ("a", 4242, 1234.5),
        ("b", None, None),
    ]
    assert all(t.state is TaskState.RUNNING for t, _ in recovered)


async def test_record_spawn_refuses_a_closed_attempt(store: Store) -> None:
    await store.submit_ticket(ticket("a"))
    claimed = await claim(store)
    await store.interrupt_attempt(claimed.attempt.token)
    with pytest.raises(StaleAttemptError):
        await store.record_spawn(claimed.attempt.token, pid=1, pid_create_time=1.0)
