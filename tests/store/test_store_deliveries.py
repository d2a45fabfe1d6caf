"""Which finished tickets still owe a delivery: recorded in the store, so a crash loses none;
and where a finished ticket's delivery stands, for whoever waits for it."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from swarmd.models import Delivery, ExitReason, TicketState
from swarmd.store import Store
from swarmd.store.schema import MIGRATIONS
from tests.support.builders import claim, task, ticket
from tests.support.clock import FakeClock


async def finish(store: Store, name: str = "a") -> int:
    submitted = await store.submit_ticket(ticket(name))
    claimed = await claim(store)
    await store.complete_attempt(claimed.attempt.token)
    return submitted.ticket_id


async def test_a_finished_ticket_owes_a_delivery_until_it_is_marked(store: Store) -> None:
    ticket_id = await finish(store)

    assert await store.undelivered_tickets() == [ticket_id]
    assert await store.mark_delivered(ticket_id, TicketState.SUCCEEDED) is True
    assert await store.undelivered_tickets() == []


async def test_an_unfinished_ticket_owes_nothing(store: Store) -> None:
    await store.submit_ticket(ticket("a"))
    assert await store.undelivered_tickets() == []


async def fail_for_good(store: Store) -> int:
    submitted = await store.submit_ticket(ticket(task("a", max_attempts=1)))
    claimed = await claim(store)
    await store.fail_attempt(claimed.attempt.token, reason=ExitReason.EXIT_CODE, error="boom")
    return submitted.ticket_id


async def test_a_retried_ticket_owes_a_new_delivery_when_it_finishes_again(store: Store) -> None:
    ticket_id = await fail_for_good(store)
    assert await store.mark_delivered(ticket_id, TicketState.FAILED)

    await store.retry(ticket_id, "a")
    assert await store.undelivered_tickets() == []  # queued again: nothing owed yet
    claimed = await claim(store)
    await store.complete_attempt(claimed.attempt.token)

    assert await store.undelivered_tickets() == [ticket_id]


async def test_a_delivery_built_for_an_earlier_finish_is_not_recorded(store: Store) -> None:
    ticket_id = await fail_for_good(store)
    await store.retry(ticket_id, "a")  # while its failed delivery was being built

    assert await store.mark_delivered(ticket_id, TicketState.FAILED) is False
    assert await store.undelivered_tickets() == []


async def test_tickets_finished_before_schema_3_are_taken_as_delivered(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        for migration in MIGRATIONS[:2]:
            for statement in migration:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
        conn.execute(
            "INSERT INTO tickets (id, title, state, agent, spec, created_at, finished_at) "
            "VALUES (1, 'done', 'succeeded', 'echo', '{}', 0, 5), "
            "(2, 'open', 'queued', 'echo', '{}', 0, NULL)"
        )
    async with await Store.open(db_path) as store:
        assert await store.undelivered_tickets() == []


async def test_a_delivery_stands_pending_then_written(store: Store) -> None:
    ticket_id = await finish(store)
    assert await store.get_delivery(ticket_id) == Delivery(written=False)
    assert not (await store.get_delivery(ticket_id)).settled
    await store.mark_delivered(ticket_id, TicketState.SUCCEEDED)
    assert await store.get_delivery(ticket_id) == Delivery(written=True)


async def test_a_failed_delivery_settles_it_until_the_ticket_finishes_again(
    store: Store, clock: FakeClock
) -> None:
    ticket_id = await fail_for_good(store)
    clock.advance(1)
    await store.record_event("delivery_failed", ticket_id=ticket_id, error="disk full")
    assert await store.get_delivery(ticket_id) == Delivery(written=False, error="disk full")

    clock.advance(1)
    await store.retry(ticket_id, "a")
    clock.advance(1)
    await store.complete_attempt((await claim(store)).attempt.token)
    # That failure was of the earlier finish: the new one's delivery is still to come.
    assert await store.get_delivery(ticket_id) == Delivery(written=False)
