"""Where a transaction runs (inline or on the store's thread), cancellation, checkpoints."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from swarmd.store import Store
from swarmd.store.database import CHECKPOINT_EVERY, Database, Transaction
from tests.support.builders import ticket


@pytest.fixture
async def database(db_path: Path) -> AsyncIterator[Database]:
    opened = await Database.connect(db_path)
    try:
        yield opened
    finally:
        await opened.close()


@contextlib.contextmanager
def write_lock_held(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the write lock, as another process's writer would."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        try:
            yield other
        finally:
            other.execute("ROLLBACK")


def thread_name(txn: Transaction) -> str:
    txn.execute("INSERT INTO events (at, kind) VALUES (0, 'probe')")
    return threading.current_thread().name


def count_events(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])


async def test_small_write_runs_inline_when_the_write_lock_is_free(
    database: Database, db_path: Path
) -> None:
    assert await database.write(thread_name, inline=True) == threading.current_thread().name
    assert await database.write(thread_name) != threading.current_thread().name
    assert count_events(db_path) == 2


async def test_inline_write_waits_on_the_store_thread_while_another_writer_holds_the_lock(
    database: Database, db_path: Path
) -> None:
    with write_lock_held(db_path):
        pending = asyncio.ensure_future(database.write(thread_name, inline=True))
        await asyncio.sleep(0.3)
        # The loop kept running meanwhile (this coroutine woke up), and nothing was written.
        assert not pending.done()
        assert count_events(db_path) == 0
    assert (await pending).startswith("swarmd-store")
    assert count_events(db_path) == 1


async def test_cancelled_write_on_the_store_thread_commits_nothing(
    database: Database, db_path: Path
) -> None:
    with write_lock_held(db_path):
        pending = asyncio.ensure_future(database.write(thread_name))
        await asyncio.sleep(0.2)
        pending.cancel()
        await asyncio.sleep(0.1)
        # The caller waits for the thread to finish with the connection before it leaves.
        assert not pending.done()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert count_events(db_path) == 0
    # The connection is usable afterwards, with no transaction left open.
    await database.write(thread_name)
    assert count_events(db_path) == 1


async def test_failed_inline_write_rolls_back_and_leaves_the_connection_usable(
    database: Database, db_path: Path
) -> None:
    def half_then_fail(txn: Transaction) -> None:
        thread_name(txn)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await database.write(half_then_fail, inline=True)
    assert count_events(db_path) == 0
    await database.write(thread_name, inline=True)
    assert count_events(db_path) == 1


async def test_inline_writes_are_checkpointed_so_the_log_stays_small(
    store: Store, db_path: Path
) -> None:
    wal = db_path.with_name(db_path.name + "-wal")
    for beat in range(8 * CHECKPOINT_EVERY):
        # A row rewritten with identical bytes dirties no page: each beat differs.
        await store.write_heartbeat(pid=1, started_at=0.0, version="x", status={"beat": beat})
    # Without checkpoints every one of those commits would stay in the log: at least one
    # page each. Checkpointed, the log is rewound and reused.
    assert wal.stat().st_size < 4 * CHECKPOINT_EVERY * 4096


async def test_a_claim_and_its_completion_survive_reopening(db_path: Path) -> None:
    async with await Store.open(db_path) as store:
        submitted = await store.submit_ticket(ticket("a", "b"))
        claimed = await store.claim_ready_task()
        assert claimed is not None
        await store.complete_attempt(claimed.attempt.token)
    async with await Store.open(db_path) as store:
        tasks = {
            task.name: task.state.value for task in await store.list_tasks(submitted.ticket_id)
        }
    assert tasks == {
        claimed.task.name: "succeeded",
        ({"a", "b"} - {claimed.task.name}).pop(): "ready",
    }


async def test_data_version_ignores_the_stores_own_inline_writes_but_not_its_thread_ones(
    store: Store,
) -> None:
    before = store.data_version()
    await store.write_heartbeat(pid=1, started_at=0.0, version="x", status={})
    claimed_nothing = await store.claim_ready_task()
    assert claimed_nothing is None
    assert store.data_version() == before
    await store.submit_ticket(ticket("a"))  # a submit runs on the store's thread
    assert store.data_version() != before


@pytest.fixture
def store_location(db_path: Path) -> Path:
    """These tests are about the SQLite file itself."""
    return db_path
