"""Following a ticket: a follower looks often right after a change and less and less while
nothing changes, sees the end when it comes, and then waits for the ticket's delivery while
a daemon is there to write it, looking at once when the daemon rings its bell."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from swarmd.cli.progress import follow_ticket
from swarmd.doorbell import Doorbell
from swarmd.models import TicketState
from swarmd.store import Store
from tests.support.builders import claim, ticket


async def test_a_follower_looks_less_while_nothing_changes_and_sees_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "swarmd.db"
    async with await Store.open(db) as store:
        ticket_id = (await store.submit_ticket(ticket("a"))).ticket_id
        token = (await claim(store, "a")).attempt.token
    looks = 0
    data_version = Store.data_version

    def counted(self: Store) -> int:
        nonlocal looks
        looks += 1
        return data_version(self)

    monkeypatch.setattr(Store, "data_version", counted)
    follower = asyncio.create_task(follow_ticket(db, ticket_id))
    await asyncio.sleep(1.0)
    # Its last task runs, and nothing changes: 10 ms after the first look, doubling up to
    # 0.1 s, is 13 looks in this second; a fixed 10 ms pace would be a hundred, 50 ms twenty.
    assert 5 <= looks <= 15
    assert not follower.done()
    async with await Store.open(db) as store:
        await store.complete_attempt(token)
    finished = await asyncio.wait_for(follower, timeout=2.0)
    assert finished.state is TicketState.SUCCEEDED


async def finished_ticket(db: Path, *, daemon_beating: bool) -> int:
    """A ticket whose one task succeeded and whose delivery is not written yet."""
    async with await Store.open(db) as store:
        ticket_id = (await store.submit_ticket(ticket("a"))).ticket_id
        await store.complete_attempt((await claim(store, "a")).attempt.token)
        if daemon_beating:
            await store.write_heartbeat(
                pid=os.getpid(), started_at=time.time(), version="test", status={}
            )
    return ticket_id


async def test_a_finished_ticket_is_followed_until_the_daemon_rings_that_its_delivery_settled(
    tmp_path: Path,
) -> None:
    db = tmp_path / "swarmd.db"
    ticket_id = await finished_ticket(db, daemon_beating=True)
    doorbell = Doorbell(tmp_path / "doorbell.sock")
    assert doorbell.open(lambda: None) is None
    try:
        # Looks 5 s apart: only the bell can end this wait within the second.
        follower = asyncio.create_task(
            follow_ticket(db, ticket_id, interval=5.0, doorbell=doorbell.path)
        )
        await asyncio.sleep(0.5)
        assert not follower.done()  # finished, but a daemon is there to deliver it
        async with await Store.open(db) as store:
            assert await store.mark_delivered(ticket_id, TicketState.SUCCEEDED)
        started = time.monotonic()
        doorbell.tell_followers(ticket_id)
        finished = await asyncio.wait_for(follower, timeout=2.0)
        assert time.monotonic() - started < 1.0
        assert finished.state is TicketState.SUCCEEDED
    finally:
        doorbell.close()


async def test_with_no_daemon_to_deliver_it_a_finished_ticket_ends_the_wait(
    tmp_path: Path,
) -> None:
    db = tmp_path / "swarmd.db"
    ticket_id = await finished_ticket(db, daemon_beating=False)
    finished = await asyncio.wait_for(follow_ticket(db, ticket_id), timeout=2.0)
    assert finished.state is TicketState.SUCCEEDED
    async with await Store.open(db) as store:
        assert not (await store.get_delivery(ticket_id)).settled
