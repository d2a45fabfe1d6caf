"""Why a task failed, as ``show`` and ``run-ticket --wait`` tell it: the error, the attempt's
log, and that log's last lines.

A task's error is one sentence (``command 'sh' failed with exit code 3``); what the agent
printed before it failed is in ``logs/attempts/<ticket>/<task>.<n>.log``. The tail shown
here is bounded (``TAIL_LINES`` lines, ``TAIL_CHARS`` characters, ``LINE_CHARS`` per line),
read from the file's end only, and every line is escaped (``swarmd.cli.quoting``): an
agent's output is untrusted text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from swarmd.cli.quoting import printable
from swarmd.home import HomeLayout
from swarmd.models import Attempt, ExitReason, Task, TaskState

TAIL_LINES = 10
TAIL_CHARS = 2000
LINE_CHARS = 240
ERROR_CHARS = 2000
READ_BYTES = 64 * 1024  # enough for TAIL_LINES of any sane length; a longer tail is cut

FAILED_STATES = frozenset({TaskState.FAILED, TaskState.DEAD})
_NOT_FAILURES = frozenset({ExitReason.OK, ExitReason.CANCELLED, ExitReason.INTERRUPTED})
# Colour and cursor sequences say nothing once escaped; they are dropped from the tail.
_TERMINAL_SEQUENCES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


@dataclass(frozen=True, slots=True)
class LogTail:
    """The last lines of a log, escaped; ``earlier`` is True when lines before them exist."""

    lines: list[str] = field(default_factory=list)
    earlier: bool = False


@dataclass(frozen=True, slots=True)
class TaskFailure:
    """The last failed attempt of a task: how it ended, and where its output is."""

    task: str
    state: str
    attempt: int
    attempts: int
    exit_reason: str
    error: str
    log: Path
    log_exists: bool
    log_tail: LogTail


def task_failures(
    layout: HomeLayout,
    ticket_id: int,
    tasks: Sequence[Task],
    attempts: dict[int, list[Attempt]],
) -> dict[str, TaskFailure]:
    """The failure of each failed or dead task, by task name."""
    failures = {}
    for task in tasks:
        if task.state not in FAILED_STATES:
            continue
        history = attempts.get(task.id, [])
        failed = [
            a for a in history if a.exit_reason is not None and a.exit_reason not in _NOT_FAILURES
        ]
        if failed:
            failures[task.name] = describe_failure(
                layout, ticket_id, task, failed[-1], len(history)
            )
    return failures


def describe_failure(
    layout: HomeLayout, ticket_id: int, task: Task, attempt: Attempt, attempts: int
) -> TaskFailure:
    log = layout.attempt_log(ticket_id, task.name, attempt.number)
    error = attempt.error or task.last_error or ""
    return TaskFailure(
        task=task.name,
        state=task.state.value,
        attempt=attempt.number,
        attempts=attempts,
        exit_reason=attempt.exit_reason.value if attempt.exit_reason else "",
        error=printable(error, ERROR_CHARS),
        log=log,
        log_exists=log.is_file(),
        log_tail=read_tail(log),
    )


def read_tail(path: Path) -> LogTail:
    """The last lines of ``path``, bounded and escaped; empty when it cannot be read."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = max(0, size - READ_BYTES)
            handle.seek(start)
            data = handle.read(READ_BYTES)
    except OSError:
        return LogTail()
    text = data.decode("utf-8", errors="replace")
    lines = text.splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # the first line was cut by the read
    lines = [line for line in lines if line.strip()]
    shown: list[str] = []
    total = 0
    for line in reversed(lines):
        cleaned = printable(_TERMINAL_SEQUENCES.sub("", line).expandtabs(4), LINE_CHARS)
        if len(shown) == TAIL_LINES or total + len(cleaned) > TAIL_CHARS:
            break
        shown.append(cleaned)
        total += len(cleaned)
    return LogTail(list(reversed(shown)), earlier=start > 0 or len(shown) < len(lines))


def failure_lines(failure: TaskFailure, indent: str = "  ") -> list[str]:
    """A failure for people: the error, then the log's path and its last lines."""
    tries = "attempt" if failure.attempts == 1 else "attempts"
    lines = [
        f"{printable(failure.task)}: {failure.state} after {failure.attempts} {tries}; "
        f"attempt {failure.attempt} ended with {failure.exit_reason}: {failure.error}"
    ]
    log = printable(str(failure.log))
    tail = failure.log_tail
    if not failure.log_exists:
        lines.append(f"{indent}no log at {log}")
    elif not tail.lines:
        lines.append(f"{indent}log {log} (empty)")
    else:
        count = len(tail.lines)
        which = f"last {count} line{'s' if count > 1 else ''}" if tail.earlier else "all of it"
        lines.append(f"{indent}log {log} ({which}):")
        lines.extend(f"{indent}| {line}" for line in tail.lines)
    return lines
