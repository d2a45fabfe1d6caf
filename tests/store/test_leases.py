"""Leases on a shared PostgreSQL database: renewal, expiry, the reaper, and their races."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from swarmd.errors import StaleAttemptError
from swarmd.models import TaskState
from swarmd.store import Store
from swarmd.store.backend import LeaseHolder
from tests.support.builders import claim, ticket

LEASE = 1.0


def holder(name: str, seconds: float = LEASE) -> LeaseHolder:
    return LeaseHolder(owner=name, host="host-" + name, home="/home/" + name, seconds=seconds)


@pytest.fixture
async def pair(postgres_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two daemons' stores on one database: ``a`` claims, ``b`` reaps."""
    a = await Store.open(postgres_url, lease=holder("a"))
    b = await Store.open(postgres_url, lease=holder("b"))
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_a_renewed_lease_outlives_its_first_expiry(pair: tuple[Store, Store]) -> None:
    a, b = pair
    submitted = await a.submit_ticket(ticket("x"))
    claimed = await claim(a)
    for _ in range(3):
        await asyncio.sleep(LEASE / 2)
        assert await a.renew_leases([claimed.attempt.token]) == {claimed.attempt.token}
    assert await b.reap_expired_leases() == []
    await a.complete_attempt(claimed.attempt.token)
    assert (await a.get_ticket(submitted.ticket_id)).state.value == "succeeded"


async def test_renewal_covers_only_the_attempts_the_daemon_names(
    pair: tuple[Store, Store],
) -> None:
    a, b = pair
    await a.submit_ticket(ticket("x", "y"))
    kept, forgotten = await claim(a), await claim(a)
    await asyncio.sleep(LEASE / 2)
    assert await a.renew_leases([kept.attempt.token]) == {kept.attempt.token}
    await asyncio.sleep(LEASE / 2 + 0.2)
    reaped = await b.reap_expired_leases()
    assert reaped == [forgotten.task.id]


async def test_an_expired_lease_is_reaped_once_and_its_task_is_ready_again(
    pair: tuple[Store, Store],
) -> None:
    a, b = pair
    submitted = await a.submit_ticket(ticket("x"))
    claimed = await claim(a)
    await asyncio.sleep(LEASE + 0.2)
    assert await b.reap_expired_leases() == [claimed.task.id]
    assert await b.reap_expired_leases() == []  # idempotent
    task = await b.get_task(submitted.ticket_id, "x")
    assert task.state is TaskState.READY
    assert task.failures == 0  # a lost lease is an interruption, not a failure
    with pytest.raises(StaleAttemptError):
        await a.complete_attempt(claimed.attempt.token)
    again = await claim(b)
    assert again.task.id == claimed.task.id and again.attempt.number == 2


async def test_a_completion_after_expiry_is_refused_even_before_the_reaper_runs(
    pair: tuple[Store, Store],
) -> None:
    a, _ = pair
    await a.submit_ticket(ticket("x"))
    claimed = await claim(a)
    await asyncio.sleep(LEASE + 0.2)
    with pytest.raises(StaleAttemptError, match="lost its lease"):
        await a.complete_attempt(claimed.attempt.token)


@pytest.mark.parametrize("round_", range(8))
async def test_a_completion_racing_the_reaper_at_expiry_has_one_winner(
    pair: tuple[Store, Store], round_: int
) -> None:
    a, b = pair
    submitted = await a.submit_ticket(ticket("x"))
    claimed = await claim(a)
    # Start both as the lease runs out: which one wins varies, that only one does must not.
    expiry = time.monotonic() + LEASE + round_ * 0.01
    await asyncio.sleep(max(0.0, expiry - time.monotonic() - 0.005))

    async def complete() -> bool:
        try:
            await a.complete_attempt(claimed.attempt.token)
        except StaleAttemptError:
            return False
        return True

    completed, reaped = await asyncio.gather(complete(), b.reap_expired_leases())
    assert completed != bool(reaped), (completed, reaped)
    task = await b.get_task(submitted.ticket_id, "x")
    attempts = await b.list_attempts(task.id)
    assert len(attempts) == 1 and attempts[0].ended_at is not None
    if completed:
        assert task.state is TaskState.SUCCEEDED and attempts[0].exit_reason is not None
        assert attempts[0].exit_reason.value == "ok"
    else:
        assert task.state is TaskState.READY
        assert attempts[0].exit_reason is not None
        assert attempts[0].exit_reason.value == "interrupted"


async def test_each_daemon_recovers_only_what_a_daemon_of_its_own_home_left(
    postgres_url: str,
) -> None:
    first = await Store.open(postgres_url, lease=holder("first", seconds=60))
    other = await Store.open(postgres_url, lease=holder("other", seconds=60))
    try:
        await first.submit_ticket(ticket("x", "y"))
        mine, theirs = await claim(first), await claim(other)
    finally:
        await first.close()
    # The next daemon of the first one's home (same host and home, a new owner id).
    successor = LeaseHolder(owner="second", host="host-first", home="/home/first", seconds=60)
    async with await Store.open(postgres_url, lease=successor) as second:
        left = await second.running_attempts()
    await other.close()
    assert [attempt.token for _, attempt in left] == [mine.attempt.token]
    assert theirs.attempt.token not in [attempt.token for _, attempt in left]
