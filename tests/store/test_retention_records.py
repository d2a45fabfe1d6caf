"""Retention's records on both backends: finished tickets found, prunes recorded, rows
removed, and the space step (SQLite's file; nothing to do on PostgreSQL)."""

from __future__ import annotations

from swarmd.models import TicketState
from swarmd.store import Store
from tests.support.builders import succeed, ticket
from tests.support.clock import FakeClock


async def test_a_finished_delivered_ticket_is_found_pruned_and_removed(
    store: Store, clock: FakeClock
) -> None:
    done = await store.submit_ticket(ticket("a"))
    await succeed(store, "a")
    await store.mark_delivered(done.ticket_id, TicketState.SUCCEEDED)
    running = await store.submit_ticket(ticket("b"))
    clock.advance(100)
    found = await store.finished_tickets(finished_before=clock())
    assert [t.id for t in found] == [done.ticket_id]
    assert await store.record_pruned(done.ticket_id, ["workspaces"], at=clock())
    assert not await store.record_pruned(running.ticket_id, ["workspaces"], at=clock())
    pruned = await store.pruned_files(done.ticket_id)
    assert pruned is not None and pruned.kinds == ("workspaces",)
    removed = await store.remove_finished_tickets(
        [done.ticket_id, running.ticket_id], finished_before=clock()
    )
    assert removed == [done.ticket_id]
    assert [t.id for t in await store.list_tickets(limit=10)] == [running.ticket_id]
    assert await store.reclaim_space() >= 0
