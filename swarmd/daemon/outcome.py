"""How an attempt ended: the daemon's policy over the facts a worker session saw.

the worker reported success              OK however it exited after (a planner's graph is
                                         checked again first)
the daemon stopped it (timeout, memory,  that reason
  hung, cancelled, shutdown)
the worker reported a failure            ERROR (TRUNCATED for an answer cut inside a file),
                                         retryable as the agent said
it died with the fork server             INTERRUPTED: swarmd's failure, no attempt burnt
it died without a word                   SIGNAL or EXIT_CODE
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from swarmd.errors import TicketError
from swarmd.models import ExitReason, TaskSpec
from swarmd.spawn.groups import describe_exit
from swarmd.spawn.session import WorkerExit
from swarmd.tickets import parse_tasks
from swarmd.wire.agent import AgentKind


@dataclass(frozen=True, slots=True)
class Verdict:
    """How an attempt ended, and what the store records for it."""

    reason: ExitReason
    error: str | None
    details: dict[str, Any]
    retryable: bool = True
    new_tasks: tuple[TaskSpec, ...] = ()  # a planner's graph, inserted as the attempt closes


def decide_verdict(seen: WorkerExit) -> Verdict:
    """Decide how the attempt ended from the result, the kill reason and the exit."""
    result = seen.result
    details = dict(result.details) if result is not None else {}
    if result is not None and result.ok:
        # The worker reported success (its archive is written): that stands, however the
        # process ended after it: killed with a fork server that died, or past a limit.
        if seen.agent_kind is AgentKind.PLANNER:
            return _planner_verdict(seen.task, details)
        return Verdict(ExitReason.OK, None, details)
    if seen.kill_reason is not None:
        return Verdict(seen.kill_reason, seen.kill_detail or seen.kill_reason.value, details)
    if result is not None:
        return Verdict(
            result.exit_reason,  # error, or truncated: the failures a worker may report
            result.error or "the agent failed",
            details,
            retryable=result.retryable,
        )
    if seen.lost_with_spawner:
        # swarmd's own failure, not the task's: requeue it without burning an attempt.
        return Verdict(ExitReason.INTERRUPTED, "the fork server stopped", details)
    code = seen.returncode if seen.returncode is not None else -1
    reason = ExitReason.SIGNAL if code < 0 else ExitReason.EXIT_CODE
    return Verdict(reason, f"the worker died with {describe_exit(code)}", details)


def _planner_verdict(task: str, details: dict[str, Any]) -> Verdict:
    """The worker validated its plan; the daemon checks it again before trusting it."""
    try:
        tasks = parse_tasks(
            details.get("plan"), existing=(task,), source="the planner's task graph"
        )
    except TicketError as exc:
        return Verdict(ExitReason.ERROR, str(exc), details, retryable=False)
    return Verdict(ExitReason.OK, None, details, new_tasks=tasks)
