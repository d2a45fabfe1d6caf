"""The trailers that tie a commit to its ticket, task and attempt.

Every commit the daemon makes for a task ends with::

    Swarmd-Ticket: 42
    Swarmd-Task: html
    Swarmd-Attempt: 1

so a delivery can say which task made which commit, from the history alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from swarmd.errors import GitError

TICKET_TRAILER = "Swarmd-Ticket"
TASK_TRAILER = "Swarmd-Task"
ATTEMPT_TRAILER = "Swarmd-Attempt"


@dataclass(frozen=True, slots=True)
class TaskTrailers:
    """Which ticket, task and attempt a commit belongs to."""

    ticket: int | str
    task: str
    attempt: int

    def as_text(self) -> str:
        """The trailer block, one ``Key: value`` line each."""
        values = {TICKET_TRAILER: str(self.ticket), TASK_TRAILER: self.task}
        for key, value in values.items():
            if not value.strip() or "\n" in value or "\r" in value:
                raise GitError(f"{key} {value!r} cannot be a trailer value")
        return (
            f"{TICKET_TRAILER}: {self.ticket}\n"
            f"{TASK_TRAILER}: {self.task}\n"
            f"{ATTEMPT_TRAILER}: {self.attempt}\n"
        )


def with_trailers(message: str, trailers: TaskTrailers) -> str:
    """``message`` with the trailer block as its last paragraph (git reads only the last)."""
    body = message.strip() or f"Task {trailers.task}"
    return f"{body}\n\n{trailers.as_text()}"


def parse_trailers(block: str) -> dict[str, str]:
    """``Key: value`` lines (as ``%(trailers:only,unfold)`` prints them) as a mapping.

    A key given twice keeps its last value.
    """
    parsed: dict[str, str] = {}
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            parsed[key.strip()] = value.strip()
    return parsed
