"""Fixtures for the operations tests: real stores, real daemons, and a hand-driven clock."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarmd.store import Store
from swarmd.store.stats import StoreStats
from tests.support.clock import FakeClock


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
