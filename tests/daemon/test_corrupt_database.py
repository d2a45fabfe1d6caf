"""A corrupt database is found at start-up: ``swarmd run`` exits 3 and leaves the file alone."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from swarmd.models import TaskSpec, TicketSpec
from swarmd.store import Store
from swarmd.store.backup import check_database
from tests.support.cli import swarmd


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_real_database(path: Path, tickets: int = 60) -> None:
    async def fill() -> None:
        async with await Store.open(path) as store:
            for i in range(tickets):
                tasks = tuple(TaskSpec(name=f"t{j}", prompt="x" * 200) for j in range(5))
                await store.submit_ticket(TicketSpec(title=f"ticket {i}", tasks=tasks))

    asyncio.run(fill())


def truncate_to_half(path: Path) -> None:
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // 2)


@pytest.fixture
def garbage_database(home: Path) -> Path:
    path = home / "swarmd.db"
    path.write_bytes(b"\x8a" + os.urandom(64 * 1024))
    return path


@pytest.fixture
def truncated_database(home: Path) -> Path:
    path = home / "swarmd.db"
    make_real_database(path)
    assert not path.with_name("swarmd.db-wal").exists(), "closing the store checkpoints its log"
    truncate_to_half(path)
    return path


@pytest.mark.parametrize("broken", ["garbage_database", "truncated_database"])
def test_run_refuses_a_corrupt_database_with_exit_3_and_leaves_it_untouched(
    broken: str, request: pytest.FixtureRequest, swarmd_env: dict[str, str]
) -> None:
    path: Path = request.getfixturevalue(broken)
    before = digest(path)

    result = swarmd("run", env=swarmd_env, timeout=60)

    assert result.returncode == 3, result.stderr
    # The console wraps long lines (anywhere in a long path): compare without whitespace.
    message = "".join(result.stderr.split())
    assert "".join(f"swarmd: the database {path} is unusable: ".split()) in message
    assert "`swarmdrestoreBACKUP`" in message and "`swarmddoctor`" in message
    assert digest(path) == before


def test_check_finds_a_truncated_database(tmp_path: Path) -> None:
    path = tmp_path / "swarmd.db"
    make_real_database(path)
    assert check_database(path).ok
    truncate_to_half(path)

    found = check_database(path)

    assert not found.ok
    assert "corrupt" in found.problems[0] or "integrity_check found" in found.problems[0]


def test_check_refuses_a_schema_newer_than_this_swarmd(tmp_path: Path) -> None:
    path = tmp_path / "swarmd.db"
    make_real_database(path, tickets=1)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()

    found = check_database(path)

    assert not found.ok
    assert "schema version 99 is newer" in found.problems[0]


def test_check_accepts_an_empty_file_as_a_database_not_yet_created(tmp_path: Path) -> None:
    path = tmp_path / "swarmd.db"
    path.touch()

    found = check_database(path)

    assert found.ok and (found.tickets, found.tasks) == (0, 0)


def test_check_of_an_idle_database_creates_no_file(tmp_path: Path) -> None:
    path = tmp_path / "swarmd.db"
    make_real_database(path, tickets=2)
    before = sorted(tmp_path.iterdir())

    assert check_database(path).tickets == 2
    assert sorted(tmp_path.iterdir()) == before
