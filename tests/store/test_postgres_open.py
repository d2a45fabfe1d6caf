"""Opening a PostgreSQL store: migrations under an advisory lock, a newer schema refused, a
notification waking another daemon, and a server that is not there."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from swarmd.errors import StoreError
from swarmd.store import Store
from swarmd.store.postgres.schema import LATEST_VERSION
from tests.support.builders import ticket
from tests.support.postgres import PostgresServer


async def test_daemons_starting_together_migrate_once(postgres: PostgresServer) -> None:
    url = postgres.new_database()  # empty: no schema yet
    stores = await asyncio.gather(*(Store.open(url) for _ in range(4)))
    try:
        assert {await store.schema_version() for store in stores} == {LATEST_VERSION}
        await stores[0].submit_ticket(ticket("a"))
        assert (await stores[3].queue_depth())["ready"] == 1
    finally:
        for store in stores:
            await store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT version FROM swarmd_schema ORDER BY version").fetchall()
    assert [row[0] for row in rows] == list(range(1, LATEST_VERSION + 1))


async def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("INSERT INTO swarmd_schema (version) VALUES (%s)", (LATEST_VERSION + 1,))
    with pytest.raises(StoreError, match=r"newer than the .* this swarmd knows"):
        await Store.open(postgres_url)


async def test_work_made_ready_elsewhere_wakes_a_listening_daemon_at_once(
    postgres_url: str,
) -> None:
    async with (
        await Store.open(postgres_url) as watcher,
        await Store.open(postgres_url) as submitter,
    ):
        watcher.data_version()  # starts listening
        listener = watcher.database._listener  # type: ignore[attr-defined]
        await asyncio.wait_for(listener.connected.wait(), timeout=10)
        before = watcher.data_version()
        started = time.monotonic()
        await submitter.submit_ticket(ticket("a"))
        while watcher.data_version() == before:
            await asyncio.sleep(0.01)
            assert time.monotonic() - started < 2, "no notification within 2 s"


async def test_a_server_that_is_not_there_is_one_sentence(postgres: PostgresServer) -> None:
    url = f"postgresql://swarmd:hunter2-secret@127.0.0.1:{postgres.port + 1}/nothing"
    with pytest.raises(StoreError) as raised:
        await Store.open(url)
    message = str(raised.value)
    assert "cannot use the database" in message and "hunter2" not in message
    assert "\n" not in message


async def test_two_submits_of_one_key_at_once_make_one_ticket(postgres_url: str) -> None:
    stores = [await Store.open(postgres_url) for _ in range(4)]
    try:
        for round_ in range(5):
            spec = ticket("a", "b")
            key = f"same-{round_}"
            results = await asyncio.gather(
                *(store.submit_ticket(spec, key=key) for store in stores)
            )
            assert len({result.ticket_id for result in results}) == 1
            assert sorted(result.created for result in results) == [False, False, False, True]
    finally:
        for store in stores:
            await store.close()
