"""Fixtures for the store's tests: a real SQLite file per test and a hand-driven clock."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarmd.store import Store
from tests.support.clock import FakeClock


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "swarmd.db"


@pytest.fixture
async def store(db_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    opened = await Store.open(db_path, clock=clock, rng=random.Random(1234))
    try:
        yield opened
    finally:
        await opened.close()
