"""The store's SQL, written for SQLite, as PostgreSQL runs it.

The verbs are written once. Where the engines spell a thing differently, the statement is
rewritten here, by a short list of exact rules, each tested against every statement of the
store (``tests/store/test_dialect.py``):

- ``?`` placeholders become ``%s`` (and a literal ``%`` becomes ``%%``);
- a set of ids or tokens passed as one JSON array, ``x IN (SELECT value FROM json_each(?))``,
  is unpacked with ``json_array_elements_text``, cast to the column's type, and compared
  with ``= ANY(ARRAY(...))``: the planner cannot tell how long the array is, and for
  ``IN (subquery)`` guesses long enough to scan the whole table; ``= ANY`` of an array
  takes the index;
- SQLite's two-argument ``MAX(a, b)`` is ``GREATEST(a, b)``;
- ``json_group_array`` is ``json_agg`` (as text, ``[]`` when empty);
- the claim's pick of the next ready task takes the row with ``FOR UPDATE SKIP LOCKED``,
  so daemons claiming at once take different tasks instead of waiting for each other;
- a claim's attempt id comes from the attempts' sequence, not ``MAX(id) + 1`` (which two
  concurrent claims would both compute).
"""

from __future__ import annotations

import functools
import re

_ID_SET = re.compile(r"([\w.]+) (NOT )?IN \(SELECT value FROM json_each\(\?\)\)")
_PAIRWISE_MAX = re.compile(r"\bMAX\((value|COALESCE)\b")
_NEXT_READY = re.compile(r"(ORDER BY priority DESC, id LIMIT 1)\)")

_REWRITES = (
    (
        "(SELECT COALESCE(MAX(id), 0) + 1 FROM attempts)",
        "nextval(pg_get_serial_sequence('attempts', 'id'))",
    ),
    (
        "(SELECT json_group_array(e.need_id) FROM edges AS e WHERE e.task_id = t.id)",
        "(SELECT COALESCE(json_agg(e.need_id), '[]'::json)::text "
        "FROM edges AS e WHERE e.task_id = t.id)",
    ),
)


def _id_set(match: re.Match[str]) -> str:
    column, negated = match.group(1), match.group(2)
    cast = "text" if column.endswith("token") else "bigint"
    test = "<> ALL" if negated else "= ANY"
    return (
        f"{column} {test}(ARRAY(SELECT value::{cast} "
        "FROM json_array_elements_text(?::json) AS value))"
    )


@functools.lru_cache(maxsize=512)
def to_postgres(sql: str) -> str:
    """``sql`` as PostgreSQL runs it (see the module's rules)."""
    for sqlite_form, postgres_form in _REWRITES:
        sql = sql.replace(sqlite_form, postgres_form)
    sql = _ID_SET.sub(_id_set, sql)
    sql = _PAIRWISE_MAX.sub(r"GREATEST(\1", sql)
    sql = _NEXT_READY.sub(r"\1 FOR UPDATE SKIP LOCKED)", sql)
    return sql.replace("%", "%%").replace("?", "%s")
