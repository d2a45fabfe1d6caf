"""The fleet's rate-limit buckets on a real PostgreSQL server: slots and pauses shared by
every daemon."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import pytest

from swarmd.store.postgres.connection import KEEPALIVES
from swarmd.store.postgres.limits import RateBuckets

INTERVAL = 0.1


@pytest.fixture
async def three(postgres_url: str) -> AsyncIterator[list[RateBuckets]]:
    buckets = [RateBuckets(postgres_url, KEEPALIVES) for _ in range(3)]
    try:
        yield buckets
    finally:
        for bucket in buckets:
            await bucket.close()


async def test_three_daemons_slots_are_spaced_as_one(three: list[RateBuckets]) -> None:
    async def take_many(bucket: RateBuckets) -> list[float]:
        granted = []
        for _ in range(10):
            asked = time.monotonic()
            slot = await bucket.take("openai", interval=INTERVAL, burst=1, max_wait=60)
            assert slot.delay is not None
            granted.append(asked + slot.delay)
        return granted

    times = sorted(t for ts in await asyncio.gather(*map(take_many, three)) for t in ts)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # 30 slots one interval apart (less what the round trips blur).
    assert min(gaps) >= INTERVAL * 0.7, gaps
    assert times[-1] - times[0] >= 29 * INTERVAL * 0.9


async def test_a_slot_past_the_budget_is_refused_and_not_taken(
    three: list[RateBuckets],
) -> None:
    first, second, _ = three
    for _ in range(5):
        await first.take("openai", interval=1.0, burst=1, max_wait=60)
    refused = await second.take("openai", interval=1.0, burst=1, max_wait=0.5)
    assert refused.delay is None and refused.wait_s is not None and refused.wait_s > 3
    granted = await second.take("openai", interval=1.0, burst=1, max_wait=60)
    assert granted.delay is not None and 3.5 < granted.delay <= 5.1  # the refusal took none


async def test_a_pause_reaches_every_daemon_and_ends(three: list[RateBuckets]) -> None:
    first, second, third = three
    await first.pause("anthropic", 0.6)
    paused = await second.take("anthropic", interval=INTERVAL, burst=1, max_wait=60)
    assert paused.delay is None and paused.paused_s is not None and 0 < paused.paused_s <= 0.6
    other = await third.take("openai", interval=INTERVAL, burst=1, max_wait=60)
    assert other.delay == 0  # another provider's bucket is not paused
    await asyncio.sleep(0.7)
    assert (await third.take("anthropic", interval=INTERVAL, burst=1, max_wait=60)).delay == 0
