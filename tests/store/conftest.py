"""Fixtures for the store's tests: a real database per test (a SQLite file, and a database
on a real PostgreSQL server) and a hand-driven clock."""

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


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, db_path: Path) -> Path | str:
    """Where the store under test lives: a SQLite file, or a database on a real PostgreSQL
    server. Every test written against ``store`` runs on both backends."""
    if request.param == "sqlite":
        return db_path
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(store_location: Path | str, clock: FakeClock) -> AsyncIterator[Store]:
    opened = await Store.open(store_location, clock=clock, rng=random.Random(1234))
    try:
        yield opened
    finally:
        await opened.close()
