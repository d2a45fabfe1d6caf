"""Every allowed task transition through the store's verbs, and the refused ones."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from swarmd.errors import InvalidTransitionError
from swarmd.models import ExitReason, TaskState
from swarmd.store import Store
from swarmd.store.database import Database
from swarmd.store.transitions import TaskRef, check_transition, move_known, move_tasks
from tests.support.builders import claim, states, succeed, task, ticket
from tests.support.clock import FakeClock

S = TaskState
ALLOWED = {
    (S.BLOCKED, S.READY), (S.BLOCKED, S.CANCELLED), (S.BLOCKED, S.SKIPPED),
    (S.READY, S.RUNNING), (S.READY, S.CANCELLED),
    (S.RUNNING, S.SUCCEEDED), (S.RUNNING, S.FAILED), (S.RUNNING, S.DEAD),
    (S.RUNNING, S.READY), (S.RUNNING, S.CANCELLED),
    (S.FAILED, S.READY), (S.FAILED, S.CANCELLED),
    (S.DEAD, S.READY), (S.DEAD, S.BLOCKED),
    (S.CANCELLED, S.READY), (S.CANCELLED, S.BLOCKED),
    (S.SKIPPED, S.READY), (S.SKIPPED, S.BLOCKED),
}  # fmt: skip


@pytest.mark.parametrize(("old", "new"), list(itertools.product(TaskState, TaskState)))
def test_check_transition_allows_exactly_the_designed_moves(old: S, new: S) -> None:
    ref = TaskRef(id=1, ticket_id=1, name="t", state=old)
    if (old, new) in ALLOWED:
        check_transition(ref, new)
    else:
        with pytest.raises(InvalidTransitionError, match=f"is {old} and cannot become {new}"):
            check_transition(ref, new)


async def test_move_known_refuses_a_forbidden_move_and_writes_nothing(
    store: Store, db_path: Path
) -> None:
    submitted = await store.submit_ticket(ticket("a"))
    done = await succeed(store, "a")
    database = await Database.connect(db_path)
    try:
        ref = TaskRef(done.task.id, submitted.ticket_id, "a", S.SUCCEEDED)
        with pytest.raises(InvalidTransitionError):
            await database.write(
                lambda txn: move_known(txn, [ref], S.READY, kind="task_ready", at=0.0)
            )
    finally:
        await database.close()
    assert await states(store, submitted.ticket_id) == {"a": "succeeded"}


async def test_move_tasks_refuses_a_source_state_that_cannot_reach_the_target(
    db_path: Path,
) -> None:
    database = await Database.connect(db_path)
    try:
        with pytest.raises(InvalidTransitionError, match="from succeeded to ready"):
            await database.write(
                lambda txn: move_tasks(
                    txn, S.READY, from_states=(S.SUCCEEDED,), where="1", kind="x", at=0.0
                )
            )
    finally:
        await database.close()


# -- blocked -----------------------------------------------------------------------------


async def test_blocked_task_becomes_ready_when_its_need_succeeds(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a", task("b", "a")))
    assert await states(store, submitted.ticket_id) == {"a": "ready", "b": "blocked"}
    await succeed(store, "a")
    assert await states(store, submitted.ticket_id) == {"a": "succeeded", "b": "ready"}


async def test_blocked_task_can_be_cancelled(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a", task("b", "a")))
    cancelled = await store.cancel(submitted.ticket_id, "b")
    assert [t.state for t in cancelled] == [S.CANCELLED]
    assert await states(store, submitted.ticket_id) == {"a": "ready", "b": "cancelled"}


async def test_blocked_task_is_skipped_when_its_need_dies(store: Store) -> None:
    submitted = await store.submit_ticket(ticket(task("a", max_attempts=1), task("b", "a")))
    claimed = await claim(store, "a")
    outcome = await store.fail_attempt(claimed.attempt.token, reason=ExitReason.ERROR, error="x")
    b = await store.get_task(submitted.ticket_id, "b")
    assert outcome.skipped == (b.id,)
    assert b.state is S.SKIPPED
    assert b.last_error == f"needs {submitted.ticket_id}.a, which died"


# -- ready -------------------------------------------------------------------------------


async def test_ready_task_becomes_running_when_claimed(store: Store) -> None:
    await store.submit_ticket(ticket("a"))
    claimed = await claim(store, "a")
    assert claimed.task.state is S.RUNNING
    assert claimed.attempt.number == 1
    assert claimed.attempt.ended_at is None


async def test_ready_task_can_be_cancelled(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a"))
    await store.cancel(submitted.ticket_id, "a")
    assert await store.claim_ready_task() is None


# -- running -----------------------------------------------------------------------------


async def test_running_task_succeeds_when_its_attempt_completes(
    store: Store, clock: FakeClock
) -> None:
    await store.submit_ticket(ticket("a"))
    claimed = await claim(store)
    clock.advance(3)
    outcome = await store.complete_attempt(claimed.attempt.token, result={"files": ["x"]})
    assert outcome.task.state is S.SUCCEEDED
    assert outcome.task.finished_at == clock.now
    [attempt] = await store.list_attempts(claimed.task.id)
    assert attempt.exit_reason is ExitReason.OK
    assert attempt.ended_at == clock.now
    assert attempt.result == {"files": ["x"]}


async def test_running_task_fails_with_attempts_left(store: Store) -> None:
    await store.submit_ticket(ticket(task("a", max_attempts=2)))
    claimed = await claim(store)
    outcome = await store.fail_attempt(
        claimed.attempt.token, reason=ExitReason.EXIT_CODE, error="exit 3"
    )
    assert outcome.task.state is S.FAILED
    assert outcome.task.failures == 1
    assert outcome.task.last_error == "exit 3"
    assert outcome.task.retry_at is not None


async def test_running_task_dies_when_its_last_attempt_fails(store: Store) -> None:
    await store.submit_ticket(ticket(task("a", max_attempts=1)))
    claimed = await claim(store)
    outcome = await store.fail_attempt(claimed.attempt.token, reason=ExitReason.TIMEOUT, error="t")
    assert outcome.task.state is S.DEAD
    assert outcome.task.failures == 1
    assert outcome.task.retry_at is None


async def test_running_task_dies_at_once_on_a_failure_that_is_not_retryable(store: Store) -> None:
    await store.submit_ticket(ticket(task("a", max_attempts=5)))
    claimed = await claim(store)
    outcome = await store.fail_attempt(
        claimed.attempt.token, reason=ExitReason.ERROR, error="bad input", retryable=False
    )
    assert outcome.task.state is S.DEAD


async def test_running_task_is_ready_again_after_an_interruption(store: Store) -> None:
    await store.submit_ticket(ticket("a"))
    claimed = await claim(store)
    outcome = await store.interrupt_attempt(claimed.attempt.token, error="daemon stopped")
    assert outcome.task.state is S.READY
    [attempt] = await store.list_attempts(claimed.task.id)
    assert attempt.exit_reason is ExitReason.INTERRUPTED
    assert attempt.error == "daemon stopped"


async def test_running_task_can_be_cancelled_and_its_attempt_stays_open(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a"))
    claimed = await claim(store)
    await store.cancel(submitted.ticket_id, "a")
    assert (await store.get_task(submitted.ticket_id, "a")).state is S.CANCELLED
    [(_, attempt)] = await store.running_attempts()
    assert attempt.token == claimed.attempt.token


# -- failed ------------------------------------------------------------------------------


async def test_failed_task_is_ready_again_when_its_backoff_is_over(
    store: Store, clock: FakeClock
) -> None:
    await store.submit_ticket(ticket("a"))
    claimed = await claim(store)
    failed = await store.fail_attempt(claimed.attempt.token, reason=ExitReason.ERROR, error="x")
    assert failed.task.retry_at is not None
    clock.now = failed.task.retry_at
    assert await store.release_due_retries() == [claimed.task.id]
    again = await claim(store, "a")
    assert again.attempt.number == 2


async def test_failed_task_can_be_cancelled(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a"))
    claimed = await claim(store)
    await store.fail_attempt(claimed.attempt.token, reason=ExitReason.ERROR, error="x")
    [cancelled] = await store.cancel(submitted.ticket_id, "a")
    assert cancelled.state is S.CANCELLED
    assert cancelled.retry_at is None


# -- the terminal states that retry revives ------------------------------------------------


async def test_dead_task_is_ready_after_a_retry_when_its_needs_succeeded(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a", task("b", "a", max_attempts=1)))
    await succeed(store, "a")
    claimed = await claim(store, "b")
    await store.fail_attempt(claimed.attempt.token, reason=ExitReason.ERROR, error="x")
    [revived] = await store.retry(submitted.ticket_id, "b")
    assert revived.state is S.READY
    assert revived.failures == 0
    assert revived.last_error is None


async def test_ticket_retry_revives_a_cancelled_need_ready_and_its_dependent_blocked(
    store: Store,
) -> None:
    submitted = await store.submit_ticket(ticket("a", task("b", "a")))
    await store.cancel(submitted.ticket_id, "a")
    assert await states(store, submitted.ticket_id) == {"a": "cancelled", "b": "skipped"}
    revived = await store.retry(submitted.ticket_id)
    assert {t.name: t.state for t in revived} == {"a": S.READY, "b": S.BLOCKED}


async def test_cancelled_task_is_ready_after_a_retry(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a"))
    await store.cancel(submitted.ticket_id)
    [revived] = await store.retry(submitted.ticket_id, "a")
    assert revived.state is S.READY


async def test_cancelled_task_is_blocked_after_a_retry_while_its_need_runs(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a", task("b", "a")))
    await claim(store, "a")
    await store.cancel(submitted.ticket_id, "b")
    [revived] = await store.retry(submitted.ticket_id, "b")
    assert revived.state is S.BLOCKED


async def test_skipped_task_is_blocked_after_a_retry_until_its_revived_need_succeeds(
    store: Store,
) -> None:
    submitted = await store.submit_ticket(
        ticket(task("top"), task("left", "top", max_attempts=1), task("bottom", "left"))
    )
    await succeed(store, "top")
    claimed = await claim(store, "left")
    await store.fail_attempt(claimed.attempt.token, reason=ExitReason.ERROR, error="x")
    revived = await store.retry(submitted.ticket_id)
    assert {t.name: t.state for t in revived} == {"left": S.READY, "bottom": S.BLOCKED}
    await succeed(store, "left")
    assert (await store.get_task(submitted.ticket_id, "bottom")).state is S.READY


# dead -> blocked and skipped -> ready are allowed by the model but no verb reaches them:
# a dead task ran, so its needs had all succeeded; a skipped task always has a need that
# is dead, cancelled or skipped, and a retry revives that need too. The parametrized
# check above covers them.


# -- refused -------------------------------------------------------------------------------


async def test_cancelling_a_succeeded_task_is_refused(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a", "b"))
    await succeed(store, "a")
    with pytest.raises(InvalidTransitionError, match=r"task \d+\.a is already succeeded"):
        await store.cancel(submitted.ticket_id, "a")


@pytest.mark.parametrize("state", ["ready", "running", "blocked", "succeeded"])
async def test_retrying_a_task_that_has_not_ended_badly_is_refused(
    store: Store, state: str
) -> None:
    submitted = await store.submit_ticket(ticket("a", task("b", "a")))
    name = "b" if state == "blocked" else "a"
    if state == "running":
        await claim(store, "a")
    elif state == "succeeded":
        await succeed(store, "a")
    with pytest.raises(InvalidTransitionError, match=f"is {state}; only dead"):
        await store.retry(submitted.ticket_id, name)


async def test_a_refused_cancel_changes_nothing(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a", task("b", "a")))
    await succeed(store, "a")
    await succeed(store, "b")
    before = await store.events()
    with pytest.raises(InvalidTransitionError, match="already finished"):
        await store.cancel(submitted.ticket_id)
    assert await store.events() == before


async def test_every_state_change_writes_an_event(store: Store) -> None:
    submitted = await store.submit_ticket(ticket(task("a", max_attempts=1), task("b", "a")))
    claimed = await claim(store, "a")
    await store.fail_attempt(claimed.attempt.token, reason=ExitReason.ERROR, error="x")
    await store.retry(submitted.ticket_id)
    kinds = [(e.kind, e.detail.get("task")) for e in await store.events(ticket_id=1)]
    assert kinds == [
        ("ticket_submitted", None),
        ("task_claimed", "a"),
        ("ticket_started", None),
        ("task_dead", "a"),
        ("task_skipped", "b"),
        ("ticket_finished", None),
        ("task_retried", "a"),
        ("task_retried", "b"),
        ("ticket_reopened", None),
    ]
