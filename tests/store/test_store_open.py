"""Opening the database: creation, migration, refusing unusable files, connection setup."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from swarmd.errors import StaleAttemptError, StoreError
from swarmd.models import TaskState
from swarmd.store import Store
from swarmd.store.database import SqliteTransaction as Transaction
from swarmd.store.schema import LATEST_VERSION, MIGRATIONS
from tests.support.builders import ticket
from tests.support.clock import FakeClock


def pragma(path: Path, name: str) -> Any:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def corrupt_schema_page(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # page 1, after the header, holds sqlite_schema
    path.write_bytes(bytes(data))


async def test_open_creates_the_directory_and_migrates_an_empty_file(db_path: Path) -> None:
    assert not db_path.parent.exists()
    async with await Store.open(db_path) as store:
        assert await store.schema_version() == LATEST_VERSION
    assert pragma(db_path, "user_version") == LATEST_VERSION


async def test_open_migrates_an_existing_empty_file(db_path: Path) -> None:
    write_file(db_path, b"")
    async with await Store.open(db_path) as store:
        assert await store.schema_version() == LATEST_VERSION


async def test_reopening_keeps_what_was_written(db_path: Path) -> None:
    async with await Store.open(db_path) as store:
        submitted = await store.submit_ticket(ticket("a", title="kept"))
    async with await Store.open(db_path) as store:
        assert (await store.get_ticket(submitted.ticket_id)).title == "kept"


async def test_open_puts_the_database_in_wal_mode(db_path: Path) -> None:
    async with await Store.open(db_path):
        assert pragma(db_path, "journal_mode") == "wal"


async def test_open_refuses_a_file_that_is_not_a_database(db_path: Path) -> None:
    write_file(db_path, b"these are not the bytes of a SQLite database\n" * 100)
    with pytest.raises(StoreError, match="is not a SQLite database") as caught:
        await Store.open(db_path)
    assert str(db_path) in str(caught.value)


async def test_open_refuses_a_database_with_a_corrupt_schema_page(db_path: Path) -> None:
    async with await Store.open(db_path) as store:
        await store.submit_ticket(ticket("a"))
    corrupt_schema_page(db_path)
    with pytest.raises(StoreError, match="is corrupt") as caught:
        await Store.open(db_path)
    assert str(db_path) in str(caught.value)


async def test_open_refuses_a_schema_newer_than_this_code(db_path: Path) -> None:
    async with await Store.open(db_path):
        pass
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    with pytest.raises(StoreError, match=f"schema version {LATEST_VERSION + 1}") as caught:
        await Store.open(db_path)
    assert str(db_path) in str(caught.value)


async def test_open_refuses_a_path_whose_directory_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    write_file(blocker, b"a file where a directory should be")
    with pytest.raises(StoreError, match="cannot create the directory"):
        await Store.open(blocker / "swarmd.db")


async def test_data_version_changes_when_another_connection_commits(db_path: Path) -> None:
    async with await Store.open(db_path) as watcher, await Store.open(db_path) as writer:
        before = watcher.data_version()
        assert watcher.data_version() == before
        await writer.submit_ticket(ticket("a"))
        assert watcher.data_version() != before


async def test_store_closes_when_used_as_an_async_context_manager(db_path: Path) -> None:
    async with await Store.open(db_path) as store:
        pass
    with pytest.raises(StoreError, match="already closed"):
        await store.queue_depth()
    await store.close()  # closing again is harmless


@pytest.mark.parametrize(
    ("one_ticket", "index"), [(False, "tasks_claim"), (True, "tasks_by_ticket")]
)
async def test_claim_finds_its_task_through_a_claim_index(
    db_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    one_ticket: bool,
    index: str,
) -> None:
    statements: list[tuple[str, Any]] = []
    original = Transaction.fetch

    def recording(self: Transaction, sql: str, parameters: Any = ()) -> Any:
        statements.append((sql, parameters))
        return original(self, sql, parameters)

    async with await Store.open(db_path, clock=clock) as store:
        submitted = await store.submit_ticket(ticket(*(f"t{i}" for i in range(50))))
        await store.submit_ticket(ticket(*(f"t{i}" for i in range(50))))
        monkeypatch.setattr(Transaction, "fetch", recording)
        await store.claim_ready_task(ticket_id=submitted.ticket_id if one_ticket else None)
    sql, parameters = next((s, p) for s, p in statements if s.lstrip().startswith("UPDATE tasks"))
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", parameters)]
    assert any(f" INDEX {index} " in f"{step} " for step in plan), plan
    assert not any(step.startswith("SCAN") and "INDEX" not in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan


async def test_a_version_1_file_with_an_open_attempt_migrates_and_its_attempt_still_fences(
    db_path: Path,
) -> None:
    db_path.parent.mkdir(parents=True)
    old_token = "ab" * 16
    with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO tickets (id, title, state, agent, spec, created_at, started_at) "
            "VALUES (1, 'old', 'running', 'echo', '{}', 0, 0)"
        )
        conn.execute(
            "INSERT INTO tasks (id, ticket_id, name, state, agent, max_attempts, created_at, "
            "started_at, current_attempt_id) VALUES (1, 1, 'a', 'running', 'echo', 3, 0, 0, 1), "
            "(2, 1, 'b', 'ready', 'echo', 3, 0, NULL, NULL)"
        )
        conn.execute(
            "INSERT INTO attempts (id, task_id, number, token, started_at) "
            f"VALUES (1, 1, 1, '{old_token}', 0)"
        )
    async with await Store.open(db_path) as store:
        assert await store.schema_version() == LATEST_VERSION
        [(task, attempt)] = await store.running_attempts()
        assert (task.name, attempt.token) == ("a", f"1.{old_token}")
        with pytest.raises(StaleAttemptError):
            await store.interrupt_attempt(old_token)
        outcome = await store.interrupt_attempt(attempt.token)
        assert outcome.task.state is TaskState.READY
        claimed = await store.claim_ready_task(ticket_id=1)
        assert claimed is not None
        assert (claimed.task.name, claimed.attempt.number) == ("a", 2)
        assert [a.number for a in await store.list_attempts(task.id)] == [1, 2]
    assert pragma(db_path, "integrity_check") == "ok"
