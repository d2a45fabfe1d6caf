"""Fixtures for the operations tests: real stores, real daemons, and a hand-driven clock."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarmd.models import ExitReason, TaskSpec, TicketSpec
from swarmd.store import Store
from swarmd.store.stats import StoreStats
from tests.integration.conftest import daemon, home, swarmd_env
from tests.store.builders import FakeClock

__all__ = ["FakeClock", "daemon", "home", "swarmd_env"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    opened = await Store.open(
        tmp_path / "home" / "swarmd.db", clock=clock, rng=random.Random(7), backoff_base=0.0
    )
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def stats(store: Store, clock: FakeClock) -> StoreStats:
    # Until Store grows its accessor, the stats read the store's own connection.
    return StoreStats(store.database, clock=clock)


async def run_attempt(
    store: Store,
    clock: FakeClock,
    seconds: float,
    *,
    reason: ExitReason = ExitReason.OK,
    result: dict[str, object] | None = None,
    name: str = "t",
) -> int:
    """Submit a one-task ticket and run one attempt of it for ``seconds``; its attempt id."""
    await store.submit_ticket(
        TicketSpec(title=name, tasks=(TaskSpec(name=name, prompt="p", max_attempts=1),))
    )
    claimed = await store.claim_ready_task()
    assert claimed is not None
    clock.advance(seconds)
    if reason is ExitReason.OK:
        await store.complete_attempt(claimed.attempt.token, result=result)
    else:
        await store.fail_attempt(
            claimed.attempt.token, reason=reason, error=reason.value, result=result
        )
    return claimed.attempt.id
