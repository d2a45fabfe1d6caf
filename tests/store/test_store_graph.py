"""Submitting task graphs, readiness along dependencies, and skip propagation."""

from __future__ import annotations

import pytest

from swarmd.errors import InputError, InvalidTransitionError, NotFoundError, TicketError
from swarmd.models import ExitReason, TaskState, TicketState
from swarmd.store import Store
from tests.support.builders import chain, claim, diamond, states, succeed, task, ticket

# -- submit ------------------------------------------------------------------------------


async def test_submit_makes_tasks_without_needs_ready_and_the_rest_blocked(store: Store) -> None:
    submitted = await store.submit_ticket(diamond())
    assert submitted.created
    assert await states(store, submitted.ticket_id) == {
        "top": "ready",
        "left": "blocked",
        "right": "blocked",
        "bottom": "blocked",
    }


async def test_submit_stores_tasks_in_dependency_order(store: Store) -> None:
    submitted = await store.submit_ticket(
        ticket(task("c", "b"), task("b", "a"), task("a"), task("solo"))
    )
    assert [t.name for t in await store.list_tasks(submitted.ticket_id)] == ["a", "b", "c", "solo"]


async def test_submit_fills_task_defaults_from_the_ticket(store: Store) -> None:
    spec = ticket(
        task("a"),
        task("b", agent="command", command=("true",), priority=9, max_attempts=7),
        agent="llm",
        priority=2,
    )
    submitted = await store.submit_ticket(spec, default_max_attempts=4)
    a, b = await store.list_tasks(submitted.ticket_id)
    assert (a.agent, a.priority, a.max_attempts) == ("llm", 2, 4)
    assert (b.agent, b.command, b.priority, b.max_attempts) == ("command", ("true",), 9, 7)


async def test_submit_priority_argument_overrides_the_ticket_priority(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a", priority=1), priority=5)
    assert (await store.get_ticket(submitted.ticket_id)).priority == 5
    assert (await store.get_task(submitted.ticket_id, "a")).priority == 5


async def test_submit_keeps_every_task_field(store: Store) -> None:
    spec = ticket(
        task(
            "verify",
            prompt="check it",
            timeout_seconds=12.5,
            model=("openai/gpt-4.1-mini", "echo/echo"),
            checks=({"file_exists": "index.html"},),
        )
    )
    submitted = await store.submit_ticket(spec)
    stored = await store.get_task(submitted.ticket_id, "verify")
    assert stored.prompt == "check it"
    assert stored.timeout_seconds == 12.5
    assert stored.model == ("openai/gpt-4.1-mini", "echo/echo")
    assert stored.checks == ({"file_exists": "index.html"},)
    assert stored.ref == f"{submitted.ticket_id}.verify"


async def test_submit_with_a_known_key_returns_the_existing_ticket_and_writes_nothing(
    store: Store,
) -> None:
    first = await store.submit_ticket(ticket("a"), key="nightly-42")
    events = await store.events()
    again = await store.submit_ticket(ticket("a"), key="nightly-42")
    assert again.ticket_id == first.ticket_id
    assert not again.created
    assert len(await store.list_tickets()) == 1
    assert await store.events() == events


async def test_submit_of_another_ticket_with_a_known_key_is_refused_and_writes_nothing(
    store: Store,
) -> None:
    first = await store.submit_ticket(ticket("a"), key="nightly-42")
    events = await store.events()
    with pytest.raises(
        InputError, match=f"key 'nightly-42' already names ticket {first.ticket_id}"
    ):
        await store.submit_ticket(ticket("a", "b", title="other"), key="nightly-42")
    assert len(await store.list_tickets()) == 1
    assert await store.events() == events


async def test_submit_takes_the_key_from_the_ticket_file(store: Store) -> None:
    first = await store.submit_ticket(ticket("a", key="from-file"))
    again = await store.submit_ticket(ticket("a", key="from-file"))
    assert (again.ticket_id, again.created) == (first.ticket_id, False)
    assert (await store.get_ticket(first.ticket_id)).key == "from-file"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ticket(), "has no tasks"),
        (ticket("a", "a"), 'task "a" is defined twice'),
        (ticket(task("a", "ghost")), 'needs unknown task "ghost"'),
        (ticket(task("a", "a")), "needs itself"),
        (ticket(task("a", "b"), task("b", "a"), "c"), "cycle through needs: a -> b -> a"),
    ],
)
async def test_submit_refuses_an_invalid_graph_and_writes_nothing(
    store: Store, spec: object, message: str
) -> None:
    with pytest.raises(TicketError, match=message):
        await store.submit_ticket(spec)  # type: ignore[arg-type]
    assert await store.list_tickets() == []


async def test_duplicate_needs_count_once(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a", task("b", "a", "a")))
    await succeed(store, "a")
    assert (await store.get_task(submitted.ticket_id, "b")).state is TaskState.READY


# -- readiness ---------------------------------------------------------------------------


async def test_diamond_bottom_waits_for_both_sides(store: Store) -> None:
    submitted = await store.submit_ticket(diamond())
    await succeed(store, "top")
    assert await states(store, submitted.ticket_id) == {
        "top": "succeeded",
        "left": "ready",
        "right": "ready",
        "bottom": "blocked",
    }
    left = await succeed(store, "left")
    assert (await store.get_task(submitted.ticket_id, "bottom")).state is TaskState.BLOCKED
    right = await claim(store, "right")
    outcome = await store.complete_attempt(right.attempt.token)
    bottom = await store.get_task(submitted.ticket_id, "bottom")
    assert outcome.newly_ready == (bottom.id,)
    assert bottom.state is TaskState.READY
    assert left.task.id != right.task.id


async def test_a_500_long_chain_runs_one_task_at_a_time_in_order(store: Store) -> None:
    submitted = await store.submit_ticket(chain(500))
    for i in range(500):
        claimed = await claim(store, f"t{i}")
        assert await store.claim_ready_task() is None
        await store.complete_attempt(claimed.attempt.token)
    assert (await store.get_ticket(submitted.ticket_id)).task_counts == {"succeeded": 500}


async def test_claims_follow_priority_then_age(store: Store) -> None:
    await store.submit_ticket(ticket("low-old"), priority=0)
    await store.submit_ticket(ticket("high"), priority=5)
    await store.submit_ticket(ticket("low-new"), priority=0)
    await store.submit_ticket(ticket(task("urgent", priority=9)), priority=0)
    order = [(await claim(store)).task.name for _ in range(4)]
    assert order == ["urgent", "high", "low-old", "low-new"]


async def test_claim_can_be_limited_to_one_ticket(store: Store) -> None:
    await store.submit_ticket(ticket("other"), priority=9)
    mine = await store.submit_ticket(ticket("b", "a"))
    claimed = await store.claim_ready_task(ticket_id=mine.ticket_id)
    assert claimed is not None
    assert (claimed.task.ticket_id, claimed.task.name) == (mine.ticket_id, "b")


async def test_claim_returns_none_when_nothing_is_ready(store: Store) -> None:
    assert await store.claim_ready_task() is None
    await store.submit_ticket(ticket("a", task("b", "a")))
    await claim(store, "a")
    assert await store.claim_ready_task() is None


# -- skip propagation ----------------------------------------------------------------------


async def test_a_dead_task_skips_its_transitive_dependents_through_a_diamond(
    store: Store,
) -> None:
    spec = ticket(
        task("top", max_attempts=1),
        task("left", "top"),
        task("right", "top"),
        task("bottom", "left", "right"),
        task("after", "bottom"),
        task("unrelated"),
    )
    submitted = await store.submit_ticket(spec)
    claimed = await claim(store, "top")
    outcome = await store.fail_attempt(claimed.attempt.token, reason=ExitReason.ERROR, error="x")
    assert len(outcome.skipped) == 4
    assert await states(store, submitted.ticket_id) == {
        "top": "dead",
        "left": "skipped",
        "right": "skipped",
        "bottom": "skipped",
        "after": "skipped",
        "unrelated": "ready",
    }
    after = await store.get_task(submitted.ticket_id, "after")
    assert after.last_error == f"needs {submitted.ticket_id}.top, which died"


async def test_skipping_leaves_finished_dependents_alone(store: Store) -> None:
    spec = ticket(task("a"), task("b", max_attempts=1), task("c", "a"), task("d", "b", "c"))
    submitted = await store.submit_ticket(spec)
    await succeed(store, "a")
    claimed = await claim(store, "b")
    await succeed(store, "c")
    await store.fail_attempt(claimed.attempt.token, reason=ExitReason.ERROR, error="x")
    assert await states(store, submitted.ticket_id) == {
        "a": "succeeded",
        "b": "dead",
        "c": "succeeded",
        "d": "skipped",
    }


# -- add_tasks -----------------------------------------------------------------------------


async def test_added_root_tasks_wait_for_the_after_task(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("plan"))
    planner = await claim(store, "plan")
    ids = await store.add_tasks(
        submitted.ticket_id, [task("write"), task("verify", "write")], after="plan"
    )
    assert len(ids) == 2
    assert await states(store, submitted.ticket_id) == {
        "plan": "running",
        "write": "blocked",
        "verify": "blocked",
    }
    assert (await store.get_task(submitted.ticket_id, "write")).needs == ("plan",)
    outcome = await store.complete_attempt(planner.attempt.token)
    assert outcome.newly_ready == (ids[0],)
    assert outcome.ticket_state is None
    await succeed(store, "write")
    await succeed(store, "verify")
    assert (await store.get_ticket(submitted.ticket_id)).state.value == "succeeded"


async def test_added_tasks_needing_only_succeeded_tasks_are_ready(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a", "b"))
    await succeed(store, "a")
    [added] = await store.add_tasks(submitted.ticket_id, [task("c", "a")])
    assert (await store.get_task(submitted.ticket_id, "c")).state is TaskState.READY
    assert (await claim(store, "b")).task.id != added


@pytest.mark.parametrize(
    ("tasks", "after", "message"),
    [
        ([task("a")], None, 'task "a" already exists in this ticket'),
        ([task("x", "ghost")], None, 'needs unknown task "ghost"'),
        ([task("x")], "ghost", "no task 'ghost' to add tasks after"),
        ([task("x", "y"), task("y", "x")], None, "cycle"),
    ],
)
async def test_add_tasks_refuses_an_invalid_graph_and_writes_nothing(
    store: Store, tasks: list[object], after: str | None, message: str
) -> None:
    submitted = await store.submit_ticket(ticket("a"))
    with pytest.raises(TicketError, match=message):
        await store.add_tasks(submitted.ticket_id, tasks, after=after)  # type: ignore[arg-type]
    assert await states(store, submitted.ticket_id) == {"a": "ready"}


async def test_add_tasks_refuses_a_need_that_can_no_longer_succeed(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a", "b"))
    await store.cancel(submitted.ticket_id, "a")
    with pytest.raises(TicketError, match="needs 'a', which is cancelled"):
        await store.add_tasks(submitted.ticket_id, [task("c", "a")])


async def test_add_tasks_refuses_a_finished_ticket(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("a"))
    await succeed(store, "a")
    with pytest.raises(InvalidTransitionError, match="already finished"):
        await store.add_tasks(submitted.ticket_id, [task("b")])


async def test_add_tasks_refuses_an_unknown_ticket(store: Store) -> None:
    with pytest.raises(NotFoundError, match="no ticket 99"):
        await store.add_tasks(99, [task("b")])


async def test_completing_a_planner_adds_its_graph_and_readies_the_roots(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("plan"))
    planner = await claim(store, "plan")
    outcome = await store.complete_attempt(
        planner.attempt.token,
        new_tasks=[task("write"), task("verify", "write", max_attempts=1)],
        default_max_attempts=5,
    )
    write = await store.get_task(submitted.ticket_id, "write")
    assert outcome.newly_ready == (write.id,)
    assert outcome.ticket_state is None
    assert (write.needs, write.max_attempts) == (("plan",), 5)
    assert await states(store, submitted.ticket_id) == {
        "plan": "succeeded",
        "write": "ready",
        "verify": "blocked",
    }
    assert (await store.get_ticket(submitted.ticket_id)).state is TicketState.RUNNING


async def test_completing_with_an_invalid_graph_writes_nothing(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("plan"))
    planner = await claim(store, "plan")
    with pytest.raises(TicketError, match="cycle"):
        await store.complete_attempt(
            planner.attempt.token, new_tasks=[task("x", "y"), task("y", "x")]
        )
    assert await states(store, submitted.ticket_id) == {"plan": "running"}
    assert await store.current_tokens([planner.attempt.token]) == {planner.attempt.token}


async def test_a_cancelled_planner_adds_no_tasks(store: Store) -> None:
    submitted = await store.submit_ticket(ticket("plan"))
    planner = await claim(store, "plan")
    await store.cancel(submitted.ticket_id)
    await store.complete_attempt(planner.attempt.token, new_tasks=[task("write")])
    assert await states(store, submitted.ticket_id) == {"plan": "cancelled"}
