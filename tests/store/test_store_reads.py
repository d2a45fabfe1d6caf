"""Reading the queue: tickets, tasks, depth, events, and the daemon's heartbeat row."""

from __future__ import annotations

import pytest

from swarmd.errors import NotFoundError
from swarmd.models import TaskState, TicketState
from swarmd.store import Store
from tests.support.builders import claim, succeed, ticket
from tests.support.clock import FakeClock


async def test_list_tickets_is_newest_first_with_task_counts(store: Store) -> None:
    first = await store.submit_ticket(ticket("a", "b", title="first"))
    second = await store.submit_ticket(ticket("a", title="second"))
    await succeed(store, "a")
    listed = await store.list_tickets()
    assert [t.id for t in listed] == [second.ticket_id, first.ticket_id]
    assert listed[1].task_counts == {"succeeded": 1, "ready": 1}
    assert listed[0].task_counts == {"ready": 1}


async def test_list_tickets_filters_by_state_and_limits(store: Store) -> None:
    for _ in range(3):
        await store.submit_ticket(ticket("a"))
    done = await succeed(store)
    assert [t.id for t in await store.list_tickets(state=TicketState.SUCCEEDED)] == [
        done.task.ticket_id
    ]
    assert len(await store.list_tickets(state=TicketState.QUEUED)) == 2
    assert len(await store.list_tickets(limit=1)) == 1


async def test_get_ticket_of_an_unknown_id_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match="there is no ticket 3"):
        await store.get_ticket(3)
    with pytest.raises(NotFoundError):
        await store.list_tasks(3)
    with pytest.raises(NotFoundError, match="no ticket 3"):
        await store.get_task(3, "a")


async def test_get_ticket_keeps_what_was_submitted(store: Store, clock: FakeClock) -> None:
    submitted = await store.submit_ticket(ticket("a", title="Landing page", agent="llm"), key="k")
    got = await store.get_ticket(submitted.ticket_id)
    assert (got.title, got.agent, got.key, got.plan) == ("Landing page", "llm", "k", False)
    assert (got.created_at, got.finished_at) == (clock.now, None)


async def test_queue_depth_counts_every_state_including_zeros(store: Store) -> None:
    assert await store.queue_depth() == {state.value: 0 for state in TaskState}
    await store.submit_ticket(ticket("a", "b", "c"))
    await claim(store)
    depth = await store.queue_depth()
    assert depth["ready"] == 2
    assert depth["running"] == 1
    assert sum(depth.values()) == 3


async def test_list_attempts_in_order(store: Store) -> None:
    await store.submit_ticket(ticket("a"))
    first = await claim(store)
    await store.interrupt_attempt(first.attempt.token)
    second = await claim(store)
    assert [a.number for a in await store.list_attempts(first.task.id)] == [1, 2]
    assert second.attempt.id == (await store.list_attempts(first.task.id))[1].id


async def test_events_page_by_id_and_filter_by_ticket(store: Store) -> None:
    first = await store.submit_ticket(ticket("a"))
    second = await store.submit_ticket(ticket("a"))
    everything = await store.events()
    assert [e.ticket_id for e in everything] == [first.ticket_id, second.ticket_id]
    assert await store.events(after_id=everything[0].id) == everything[1:]
    assert await store.events(ticket_id=second.ticket_id) == everything[1:]
    assert await store.events(limit=1) == everything[:1]


async def test_record_event_stores_its_detail(store: Store, clock: FakeClock) -> None:
    submitted = await store.submit_ticket(ticket("a"))
    await store.record_event("archive_written", ticket_id=submitted.ticket_id, bytes=12)
    event = (await store.events())[-1]
    assert (event.kind, event.at, event.detail) == ("archive_written", clock.now, {"bytes": 12})


async def test_heartbeat_is_written_read_and_cleared_by_its_owner(
    store: Store, clock: FakeClock
) -> None:
    assert await store.read_heartbeat() is None
    await store.write_heartbeat(pid=10, started_at=5.0, version="0.1.0", status={"workers": 2})
    clock.advance(1)
    await store.write_heartbeat(pid=10, started_at=5.0, version="0.1.0", status={"workers": 3})
    assert await store.read_heartbeat() == {
        "pid": 10,
        "started_at": 5.0,
        "heartbeat_at": clock.now,
        "version": "0.1.0",
        "status": {"workers": 3},
    }
    await store.clear_heartbeat(pid=11)
    assert await store.read_heartbeat() is not None
    await store.clear_heartbeat(pid=10)
    assert await store.read_heartbeat() is None
