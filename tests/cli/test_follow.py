"""Following a ticket: a follower looks often right after a change and less and less while
nothing changes, and sees the end when it comes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from swarmd.cli.progress import follow_ticket
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
