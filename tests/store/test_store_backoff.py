"""Retry backoff: exponential, capped, jittered, and released by the injected clock."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from swarmd.models import ExitReason, TaskState
from swarmd.store import Store
from swarmd.store.backoff import retry_delay
from tests.support.builders import claim, task, ticket
from tests.support.clock import FakeClock


@pytest.mark.parametrize("seed", range(5))
async def test_retry_at_grows_exponentially_within_the_jitter_band_up_to_the_cap(
    db_path: Path, clock: FakeClock, seed: int
) -> None:
    base, cap = 2.0, 20.0
    async with await Store.open(
        db_path, clock=clock, rng=random.Random(seed), backoff_base=base, backoff_max=cap
    ) as store:
        await store.submit_ticket(ticket(task("a", max_attempts=10)))
        for failures in range(1, 10):
            claimed = await claim(store)
            outcome = await store.fail_attempt(
                claimed.attempt.token, reason=ExitReason.ERROR, error="x"
            )
            assert outcome.task.retry_at is not None
            ceiling = min(base * 2 ** (failures - 1), cap)
            delay = outcome.task.retry_at - clock.now
            assert 0.5 * ceiling <= delay <= ceiling
            clock.now = outcome.task.retry_at
            assert await store.release_due_retries() == [claimed.task.id]


def test_retry_delay_is_reproducible_with_a_seeded_rng() -> None:
    first = [retry_delay(n, base=5, cap=300, rng=random.Random(9)) for n in range(1, 8)]
    again = [retry_delay(n, base=5, cap=300, rng=random.Random(9)) for n in range(1, 8)]
    assert first == again


def test_retry_delay_stays_finite_after_very_many_failures() -> None:
    assert retry_delay(10_000, base=5, cap=300, rng=random.Random(1)) <= 300


async def test_release_due_retries_waits_for_the_clock(store: Store, clock: FakeClock) -> None:
    submitted = await store.submit_ticket(ticket("a", "b"))
    a, b = await claim(store, "a"), await claim(store, "b")
    failed_a = await store.fail_attempt(a.attempt.token, reason=ExitReason.ERROR, error="x")
    clock.advance(100)
    failed_b = await store.fail_attempt(b.attempt.token, reason=ExitReason.ERROR, error="x")
    assert failed_a.task.retry_at is not None
    assert failed_b.task.retry_at is not None
    clock.now = failed_a.task.retry_at - 0.001
    assert await store.release_due_retries() == []
    assert await store.next_retry_at() == failed_a.task.retry_at
    clock.now = failed_a.task.retry_at
    assert await store.release_due_retries() == [a.task.id]
    assert await store.next_retry_at() == failed_b.task.retry_at
    assert (await store.get_task(submitted.ticket_id, "b")).state is TaskState.FAILED
    clock.now = failed_b.task.retry_at
    assert await store.release_due_retries() == [b.task.id]
    assert await store.next_retry_at() is None


async def test_a_released_task_keeps_its_failure_count(store: Store, clock: FakeClock) -> None:
    submitted = await store.submit_ticket(ticket(task("a", max_attempts=3)))
    claimed = await claim(store)
    await store.fail_attempt(claimed.attempt.token, reason=ExitReason.ERROR, error="x")
    clock.advance(10_000)
    await store.release_due_retries()
    stored = await store.get_task(submitted.ticket_id, "a")
    assert (stored.state, stored.failures, stored.retry_at) == (TaskState.READY, 1, None)
