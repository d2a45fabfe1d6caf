"""The nouns of swarmd: tickets, tasks, attempts, and the task state machine.

Plain frozen dataclasses: the store returns them, the supervisor reads them, the CLI prints
them. Nothing here touches the database, a process, or the network.

Task states (DESIGN.md §4)::

    blocked ──(last need succeeded)──► ready ──(claimed)──► running
                                        ▲                      │
                        (backoff over)  │                      ├─► succeeded
                                      failed ◄──(error, attempts left)
                                                               ├─► dead     (attempts exhausted)
    any non-terminal ──(cancel)──► cancelled                   └─► ready    (interrupted, free)
    blocked ──(a need died / was cancelled / skipped)──► skipped
    dead | cancelled | skipped | failed ──(retry)──► ready or blocked
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Clock = Callable[[], float]
"""Wall-clock seconds since the epoch; injected so tests never sleep."""


class TaskState(enum.StrEnum):
    BLOCKED = "blocked"
    READY = "ready"
    RUNNING = "running"
    FAILED = "failed"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_TASK_STATES


TERMINAL_TASK_STATES = frozenset(
    {TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED, TaskState.SKIPPED}
)
ACTIVE_TASK_STATES = frozenset(
    {TaskState.BLOCKED, TaskState.READY, TaskState.RUNNING, TaskState.FAILED}
)

ALLOWED_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.BLOCKED: frozenset({TaskState.READY, TaskState.CANCELLED, TaskState.SKIPPED}),
    TaskState.READY: frozenset({TaskState.RUNNING, TaskState.CANCELLED}),
    TaskState.RUNNING: frozenset(
        {
            TaskState.SUCCEEDED,
            TaskState.FAILED,
            TaskState.DEAD,
            TaskState.READY,
            TaskState.CANCELLED,
        }
    ),
    TaskState.FAILED: frozenset({TaskState.READY, TaskState.CANCELLED}),
    TaskState.SUCCEEDED: frozenset(),
    TaskState.DEAD: frozenset({TaskState.READY, TaskState.BLOCKED}),
    TaskState.CANCELLED: frozenset({TaskState.READY, TaskState.BLOCKED}),
    TaskState.SKIPPED: frozenset({TaskState.READY, TaskState.BLOCKED}),
}
"""Every state change the store may make; anything else is refused."""

RETRYABLE_TASK_STATES = frozenset(
    {TaskState.DEAD, TaskState.CANCELLED, TaskState.SKIPPED, TaskState.FAILED}
)


def can_transition(old: TaskState, new: TaskState) -> bool:
    return new in ALLOWED_TRANSITIONS[old]


class TicketState(enum.StrEnum):
    """Derived from the ticket's tasks; stored so listings can filter on it."""

    QUEUED = "queued"  # no task has started yet
    RUNNING = "running"  # some task started, some task still active
    SUCCEEDED = "succeeded"  # every task succeeded
    FAILED = "failed"  # all tasks terminal, at least one dead or skipped
    CANCELLED = "cancelled"  # all tasks terminal, cancelled and none dead

    @property
    def is_terminal(self) -> bool:
        return self in (TicketState.SUCCEEDED, TicketState.FAILED, TicketState.CANCELLED)


class ExitReason(enum.StrEnum):
    """Why an attempt ended. ``exit_code``/``signal`` carry details in ``Attempt.error``."""

    OK = "ok"
    ERROR = "error"  # the agent reported a failure
    EXIT_CODE = "exit_code"  # the worker exited non-zero without a result
    SIGNAL = "signal"  # the worker was killed by a signal nobody in swarmd sent
    TIMEOUT = "timeout"
    MEMORY = "memory"
    HUNG = "hung"  # alive but silent past its heartbeat allowance
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # daemon shutdown or crash; does not burn an attempt
    CONFLICT = "conflict"  # a repository task's work does not merge into its ticket's branch
    TRUNCATED = "truncated"  # the model's answer hit its token limit inside a file block


class AlertEvent(enum.StrEnum):
    """What an alert reports (``SWARMD_NOTIFY_EVENTS`` names these)."""

    TICKET_SUCCEEDED = "ticket_succeeded"
    TICKET_FAILED = "ticket_failed"
    TICKET_CANCELLED = "ticket_cancelled"
    TASK_DEAD = "task_dead"
    MODELS_COOLING = "models_cooling"  # every model of the chain is cooling down
    GATE_HELD = "gate_held"  # the spawn gate held longer than SWARMD_NOTIFY_GATE_HELD_MINUTES
    DAEMON_STARTED = "daemon_started"
    DAEMON_STOPPED = "daemon_stopped"
    DAEMON_DOWN = "daemon_down"  # sent by `swarmd alert` from the dead man's timer
    RETENTION_PRUNED = "retention_pruned"  # the daemon's retention pass freed space
    RETENTION_FAILED = "retention_failed"  # a pass failed, or left paths it could not remove


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task as written in a ticket file (or by a planner), validated."""

    name: str
    agent: str | None = None  # None: the ticket's default agent
    prompt: str | None = None
    command: tuple[str, ...] | None = None
    needs: tuple[str, ...] = ()
    priority: int | None = None  # None: the ticket's priority
    max_attempts: int | None = None  # None: SWARMD_MAX_ATTEMPTS
    timeout_seconds: float | None = None  # None: SWARMD_WORKER_TIMEOUT_SECONDS
    model: tuple[str, ...] | None = None  # a model chain; None: the agent's or settings'
    checks: tuple[dict[str, Any], ...] = ()  # verify checks, for verify tasks


@dataclass(frozen=True, slots=True)
class TicketSpec:
    """A whole ticket file, validated: the tasks are a DAG with unique names."""

    title: str
    tasks: tuple[TaskSpec, ...]
    agent: str = "echo"
    priority: int = 0
    key: str | None = None
    plan: bool = False
    prompt: str | None = None
    model: tuple[str, ...] | None = None
    repo: str | None = None  # a registered repository's name, or an absolute path
    base: str | None = None  # the ref its tasks start from (default: the repository's)
    deliver: str | None = None  # branch | push | pr (default: the repository's)


@dataclass(frozen=True, slots=True)
class Ticket:
    id: int
    title: str
    state: TicketState
    priority: int
    key: str | None
    agent: str
    plan: bool
    created_at: float
    finished_at: float | None
    task_counts: dict[str, int] = field(default_factory=dict)  # state -> count


@dataclass(frozen=True, slots=True)
class Task:
    id: int
    ticket_id: int
    name: str
    state: TaskState
    agent: str
    prompt: str | None
    command: tuple[str, ...] | None
    needs: tuple[str, ...]
    priority: int
    max_attempts: int
    failures: int  # attempts that ended in failure; interruptions do not count
    timeout_seconds: float | None
    model: tuple[str, ...] | None
    checks: tuple[dict[str, Any], ...]
    retry_at: float | None
    created_at: float
    finished_at: float | None
    last_error: str | None

    @property
    def ref(self) -> str:
        """The id users type: ``TICKET.TASK``."""
        return f"{self.ticket_id}.{self.name}"


@dataclass(frozen=True, slots=True)
class Attempt:
    id: int
    task_id: int
    number: int  # 1 for the first attempt of the task, counting interruptions too
    token: str  # the fencing token
    started_at: float
    ended_at: float | None
    pid: int | None
    pid_create_time: float | None
    exit_reason: ExitReason | None
    error: str | None
    result: dict[str, Any] | None  # the worker's report: model, usage, files, ...


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    """What ``claim_ready_task`` hands the supervisor: the task and its new attempt."""

    task: Task
    attempt: Attempt


@dataclass(frozen=True, slots=True)
class SubmitResult:
    ticket_id: int
    created: bool  # False when an idempotency key matched an existing ticket


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """What closing an attempt did to the task graph."""

    task: Task
    newly_ready: tuple[int, ...] = ()  # task ids that became ready in the same transaction
    skipped: tuple[int, ...] = ()  # task ids skipped because this one died or was cancelled
    ticket_state: TicketState | None = None  # set when the ticket reached a terminal state


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a finished ticket's delivery archive stands: written, failed (why), or neither
    yet (the daemon is writing it, or no daemon runs to write it)."""

    written: bool
    error: str | None = None  # why the last try failed, since the ticket finished

    @property
    def settled(self) -> bool:
        """Whether waiting longer would change nothing: written, or failed until a restart."""
        return self.written or self.error is not None


@dataclass(frozen=True, slots=True)
class Event:
    """One row of the event log: what happened to a ticket or task, and when."""

    id: int
    at: float
    ticket_id: int | None
    task_id: int | None
    kind: str
    detail: dict[str, Any]
