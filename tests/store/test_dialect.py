"""Every statement of the store, rewritten for PostgreSQL, is one the server accepts."""

from __future__ import annotations

import itertools
import re
from types import ModuleType

import psycopg
import pytest
from psycopg import pq

from swarmd.store import queries, repo_records, retention, stats
from swarmd.store.postgres.dialect import to_postgres
from tests.support.postgres import PostgresServer, new_database_url

_SQLITE_ONLY = re.compile(r"PRAGMA|sqlite_")


def statements(module: ModuleType) -> list[tuple[str, str]]:
    found = []
    for name, value in vars(module).items():
        if not name.isupper() or name.startswith("_") or not isinstance(value, str):
            continue
        if not re.match(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", value):
            continue
        if "{" in value or _SQLITE_ONLY.search(value):
            continue
        found.append((f"{module.__name__}.{name}", value))
    return found


ALL = [s for m in (queries, stats, repo_records, retention) for s in statements(m)]


def test_every_statement_is_found() -> None:
    assert len(ALL) > 40


def test_the_rewrite_leaves_nothing_of_sqlite() -> None:
    for name, sql in ALL:
        rewritten = to_postgres(sql)
        assert "?" not in rewritten, name
        assert "json_each" not in rewritten and "json_group_array" not in rewritten, name


@pytest.fixture(scope="module")
def database(postgres: PostgresServer) -> str:
    return new_database_url()


@pytest.mark.parametrize(("name", "sql"), ALL, ids=[name for name, _ in ALL])
def test_postgres_prepares_it(database: str, name: str, sql: str) -> None:
    numbers = itertools.count(1)
    prepared = re.sub(r"%s", lambda _: f"${next(numbers)}", to_postgres(sql)).replace("%%", "%")
    with psycopg.connect(database, autocommit=True) as conn:
        result = conn.pgconn.prepare(b"statement", prepared.encode())
        assert result.status == pq.ExecStatus.COMMAND_OK, (
            name,
            result.error_message.decode(),
        )


def test_the_claim_skips_rows_another_claim_holds() -> None:
    rewritten = to_postgres(queries.WHERE_NEXT_READY)
    assert "FOR UPDATE SKIP LOCKED" in rewritten
    assert "FOR UPDATE SKIP LOCKED" in to_postgres(queries.WHERE_NEXT_READY_OF_TICKET)


def test_a_set_of_ids_is_compared_with_an_array_the_index_can_take() -> None:
    assert to_postgres("SELECT 1 FROM tasks WHERE id IN (SELECT value FROM json_each(?))") == (
        "SELECT 1 FROM tasks WHERE id = ANY(ARRAY(SELECT value::bigint "
        "FROM json_array_elements_text(%s::json) AS value))"
    )
    assert "a.token = ANY(ARRAY(SELECT value::text" in to_postgres(
        "a.token IN (SELECT value FROM json_each(?))"
    )
    assert "id <> ALL(ARRAY(SELECT value::bigint" in to_postgres(
        "id NOT IN (SELECT value FROM json_each(?))"
    )
