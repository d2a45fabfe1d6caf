"""Rows to models, the JSON columns' encoding, and the fencing token's format."""

from __future__ import annotations

import json
import secrets
from typing import Any

from swarmd.models import Attempt, Event, ExitReason, Task, TaskState, Ticket, TicketState
from swarmd.store.backend import Row


def dump_json(value: Any) -> str | None:
    """Encode a JSON column; tuples become arrays, None stays NULL."""
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"))


def new_token(attempt_id: int) -> str:
    """A fresh fencing token for an attempt: its id, a dot, and 128 random bits."""
    return f"{attempt_id}.{secrets.token_hex(16)}"


def attempt_id_of(token: str) -> int | None:
    """The attempt id a token starts with; None for a string no claim could have made."""
    head, dot, _ = token.partition(".")
    return int(head) if dot and head.isascii() and head.isdigit() else None


def _tuple_or_none(text: str | None) -> tuple[Any, ...] | None:
    return None if text is None else tuple(json.loads(text))


def task_from_row(row: Row) -> Task:
    return Task(
        id=row["id"],
        ticket_id=row["ticket_id"],
        name=row["name"],
        state=TaskState(row["state"]),
        agent=row["agent"],
        prompt=row["prompt"],
        command=_tuple_or_none(row["command"]),
        needs=tuple(json.loads(row["needs"])),
        priority=row["priority"],
        max_attempts=row["max_attempts"],
        failures=row["failures"],
        timeout_seconds=row["timeout_seconds"],
        model=_tuple_or_none(row["model"]),
        checks=tuple(json.loads(row["checks"])),
        retry_at=row["retry_at"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        last_error=row["last_error"],
    )


def attempt_from_row(row: Row) -> Attempt:
    reason = row["exit_reason"]
    result = row["result"]
    return Attempt(
        id=row["id"],
        task_id=row["task_id"],
        number=row["number"],
        token=row["token"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        pid=row["pid"],
        pid_create_time=row["pid_create_time"],
        exit_reason=None if reason is None else ExitReason(reason),
        error=row["error"],
        result=None if result is None else json.loads(result),
    )


def ticket_from_row(row: Row, task_counts: dict[str, int]) -> Ticket:
    return Ticket(
        id=row["id"],
        title=row["title"],
        state=TicketState(row["state"]),
        priority=row["priority"],
        key=row["key"],
        agent=row["agent"],
        plan=bool(row["plan"]),
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        task_counts=task_counts,
    )


def event_from_row(row: Row) -> Event:
    return Event(
        id=row["id"],
        at=row["at"],
        ticket_id=row["ticket_id"],
        task_id=row["task_id"],
        kind=row["kind"],
        detail=json.loads(row["detail"]),
    )
