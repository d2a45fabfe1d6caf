"""State changes of tasks and tickets, and their effects along the dependency graph.

Every change of a task's state goes through one of two helpers, which refuse anything
``models.can_transition`` forbids (``InvalidTransitionError``) and write one event per task
moved: ``move_tasks`` moves whatever matches a condition and returns it (claiming,
releasing retries), checking each source state it accepts; ``move_known`` moves tasks whose
state this transaction has read, checking each.

The graph effects are driven by counters and edges, never by scanning a ticket: a dependent
becomes ready in the transaction where its ``pending_needs`` reaches zero.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from swarmd.errors import InvalidTransitionError, NotFoundError
from swarmd.models import (
    RETRYABLE_TASK_STATES,
    ExitReason,
    Task,
    TaskState,
    TicketState,
    can_transition,
)
from swarmd.store import queries
from swarmd.store.backend import Row, Transaction

BROKEN_NEED_STATES = frozenset({TaskState.DEAD, TaskState.CANCELLED, TaskState.SKIPPED})
"""A task needing one of these will not run until that need is retried."""

# Columns a move may set besides ``state``; names are formatted into SQL, so they are fixed.
_SETTABLE_COLUMNS = frozenset({"failures", "retry_at", "finished_at", "last_error"})


class TaskLike(Protocol):
    """What a move needs to know about a task: a ``Task`` or a ``TaskRef``."""

    @property
    def id(self) -> int: ...
    @property
    def ticket_id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def state(self) -> TaskState: ...


class TaskRef(NamedTuple):
    id: int
    ticket_id: int
    name: str
    state: TaskState

    @classmethod
    def from_row(cls, row: Row) -> TaskRef:
        return cls(row["id"], row["ticket_id"], row["name"], TaskState(row["state"]))


def check_transition(task: TaskLike, new: TaskState) -> None:
    if not can_transition(task.state, new):
        raise InvalidTransitionError(
            f"task {task.ticket_id}.{task.name} is {task.state} and cannot become {new}"
        )


def move_tasks(
    txn: Transaction,
    new: TaskState,
    *,
    from_states: Collection[TaskState],
    where: str,
    params: Sequence[Any] = (),
    sets: str = "",
    set_params: Sequence[Any] = (),
    returning: str = "",
    kind: str,
    at: float,
    detail: Mapping[str, Any] | None = None,
) -> list[Row]:
    """Move the tasks matching ``where`` and now in one of ``from_states`` to ``new``.

    ``sets`` adds assignments (``", retry_at = NULL"``) whose values are ``set_params``;
    ``returning`` adds columns to the returned rows. Returns the moved tasks as they are now.
    """
    for state in from_states:
        if not can_transition(state, new):
            raise InvalidTransitionError(f"a task cannot go from {state} to {new}")
    sql = queries.MOVE_TASKS.format(
        sets=sets,
        from_states=", ".join("?" * len(from_states)),
        where=where,
        columns=queries.TASK_COLUMNS + returning,
    )
    rows = txn.fetch(sql, (new.value, *set_params, *from_states, *params))
    for row in rows:
        _log_move(txn, TaskRef.from_row(row), kind=kind, at=at, detail=detail)
    return rows


def move_known(
    txn: Transaction,
    tasks: Sequence[TaskLike],
    new: TaskState,
    *,
    kind: str,
    at: float,
    detail: Mapping[str, Any] | None = None,
    **columns: Any,
) -> None:
    """Move tasks whose current state was read in this transaction.

    ``columns`` are further assignments (``finished_at=at``), from a fixed set of names.
    """
    unknown = columns.keys() - _SETTABLE_COLUMNS
    if unknown:
        raise ValueError(f"cannot set task columns {sorted(unknown)}")
    for task in tasks:
        check_transition(task, new)
    if not tasks:
        return
    assignments = "".join(f", {column} = ?" for column in columns)
    txn.execute(
        f"UPDATE tasks SET state = ?{assignments} WHERE {queries.WHERE_ID_IN}",
        (new.value, *columns.values(), json.dumps([task.id for task in tasks])),
    )
    for task in tasks:
        _log_move(txn, task, kind=kind, at=at, detail=detail)


def move_task(
    txn: Transaction,
    task: Task,
    new: TaskState,
    *,
    kind: str,
    at: float,
    detail: Mapping[str, Any] | None = None,
    **fields: Any,
) -> Task:
    """``move_known`` for one task; returns the task as the write leaves it."""
    move_known(txn, [task], new, kind=kind, at=at, detail=detail, **fields)
    return dataclasses.replace(task, state=new, **fields)


def _log_move(
    txn: Transaction, task: TaskLike, *, kind: str, at: float, detail: Mapping[str, Any] | None
) -> None:
    txn.add_event(
        at,
        kind,
        ticket_id=task.ticket_id,
        task_id=task.id,
        detail={"task": task.name, **(detail or {})},
    )


def release_dependents(txn: Transaction, task_id: int, *, at: float) -> list[int]:
    """Count down the dependents of a task that succeeded; those at zero become ready."""
    counted = txn.fetch(queries.COUNT_DOWN_DEPENDENTS, (task_id,))
    due = [
        TaskRef.from_row(row)
        for row in counted
        if row["pending_needs"] == 0 and row["state"] == TaskState.BLOCKED.value
    ]
    move_known(txn, due, TaskState.READY, kind="task_ready", at=at)
    return [task.id for task in due]


def skip_downstream(
    txn: Transaction, task_ids: Sequence[int], *, reason: str, at: float
) -> list[int]:
    """Skip every unfinished task that transitively needs one of ``task_ids``."""
    rows = txn.fetch(queries.DOWNSTREAM_TASKS, (json.dumps(list(task_ids)),))
    doomed = [ref for ref in map(TaskRef.from_row, rows) if not ref.state.is_terminal]
    move_known(
        txn,
        doomed,
        TaskState.SKIPPED,
        kind="task_skipped",
        at=at,
        detail={"reason": reason},
        finished_at=at,
        last_error=reason,
    )
    return [task.id for task in doomed]


def derive_ticket_state(counts: Mapping[str, int]) -> TicketState:
    """The state of a ticket whose tasks are all terminal, from its task counts by state."""
    if counts.get(TaskState.DEAD.value):
        return TicketState.FAILED
    if counts.get(TaskState.CANCELLED.value):
        return TicketState.CANCELLED
    if counts.get(TaskState.SKIPPED.value):
        return TicketState.FAILED
    return TicketState.SUCCEEDED


def settle_ticket(txn: Transaction, ticket_id: int, *, at: float) -> TicketState | None:
    """Bring a ticket's stored state in line with its tasks.

    Returns the ticket's state when it has just become terminal, else None.
    """
    row = txn.fetch_one(queries.TICKET_PROGRESS, (ticket_id,))
    if row is None:
        raise NotFoundError(f"there is no ticket {ticket_id}")
    current = TicketState(row["state"])
    if row["busy"]:
        wanted = TicketState.RUNNING if row["started_at"] is not None else TicketState.QUEUED
    else:
        counts = txn.fetch(queries.TASK_COUNTS_OF_TICKET, (ticket_id,))
        wanted = derive_ticket_state({count["state"]: count["n"] for count in counts})
    if wanted == current:
        return None
    finished_at = at if wanted.is_terminal else None
    txn.execute(queries.SET_TICKET_STATE, (wanted.value, finished_at, ticket_id))
    if wanted.is_terminal:
        txn.add_event(at, "ticket_finished", ticket_id=ticket_id, detail={"state": wanted.value})
        return wanted
    if current.is_terminal:
        txn.add_event(at, "ticket_reopened", ticket_id=ticket_id, detail={"state": wanted.value})
    return None


def revivable_with_dependents(txn: Transaction, task: Task) -> list[int]:
    """The ids a retry of one task revives: the task, and the skipped tasks downstream of
    it that nothing else broken holds back. Refuses a task that did not end badly, or one
    that needs a broken task itself."""
    if task.state not in RETRYABLE_TASK_STATES:
        raise InvalidTransitionError(
            f"task {task.ref} is {task.state}; only dead, failed, cancelled or skipped "
            "tasks can be retried"
        )
    for need in txn.fetch(queries.NEEDS_OF_TASK, (task.id,)):
        if TaskState(need["state"]) in BROKEN_NEED_STATES:
            raise InvalidTransitionError(
                f"task {task.ref} needs {task.ticket_id}.{need['name']}, which is "
                f"{need['state']}; retry that first"
            )
    states = {
        row["id"]: TaskState(row["state"])
        for row in txn.fetch(queries.TASK_IDS_OF_TICKET, (task.ticket_id,))
    }
    revived = {task.id}
    # Ids grow in dependency order, so every need of a dependent is decided before it.
    for row in txn.fetch(queries.DOWNSTREAM_WITH_NEEDS, (task.id,)):
        if states[row["id"]] is not TaskState.SKIPPED:
            continue
        needs = json.loads(row["need_ids"])
        if all(need in revived or states[need] not in BROKEN_NEED_STATES for need in needs):
            revived.add(row["id"])
    return sorted(revived)


def revive(txn: Transaction, ids: Sequence[int], *, at: float) -> None:
    """Give tasks that ended badly a fresh start: ready if every need succeeded, else blocked."""
    ids_json = json.dumps(list(ids))
    candidates = txn.fetch(queries.REVIVAL_CANDIDATES, (ids_json,))
    # A task cancelled while running may still have its attempt open; the retry
    # supersedes it, so a late result from that worker is refused by fencing.
    txn.execute(
        queries.CLOSE_OPEN_ATTEMPTS_OF_TASKS,
        (at, ExitReason.CANCELLED.value, "superseded by a retry", ids_json),
    )
    # Reviving changes no task to or from succeeded, so the counts hold after the moves.
    txn.execute(queries.RECOUNT_PENDING_NEEDS, (ids_json,))
    for target, unmet in ((TaskState.READY, False), (TaskState.BLOCKED, True)):
        move_known(
            txn,
            [TaskRef.from_row(row) for row in candidates if bool(row["unmet"]) is unmet],
            target,
            kind="task_retried",
            at=at,
            failures=0,
            retry_at=None,
            finished_at=None,
            last_error=None,
        )
