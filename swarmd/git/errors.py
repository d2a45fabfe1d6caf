"""How a repository operation failed.

Every failure is a ``GitError`` with one sentence for people; the subclasses carry what a
caller acts on (the conflicted paths, the refused files)::

    GitError (swarmd.errors)
    ├── GitCommandError        a git command exited with a status it should not have
    ├── NotARepositoryError    not the top level of a repository, or bare where a checkout
    │                          is needed (also an InputError: exit 2)
    ├── RepoLockTimeoutError   the repository's lock was not acquired within the timeout
    ├── MergeConflictError     a merge would conflict; carries the conflicted paths
    ├── MergeRaceError         the branch kept moving: every update-ref lost its race
    ├── CommitRefusedError     a task's changes hold files that must never be committed
    ├── TaskBranchError        the agent left its task branch or moved it off its start
    └── WorktreeError          a worktree or branch operation was refused

Messages never carry a credential: a URL's ``user:password@`` part is masked before git's
own words are quoted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from swarmd.errors import GitError, InputError

STDERR_MAX_CHARS = 400
PATHS_SHOWN = 10

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def mask_credentials(text: str) -> str:
    """``text`` with the ``user:secret@`` part of every URL in it replaced by ``***@``."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)


def one_line(text: str, limit: int = STDERR_MAX_CHARS) -> str:
    """Several lines of a tool's output as one bounded line, credentials masked."""
    joined = "; ".join(line.strip() for line in text.splitlines() if line.strip())
    joined = mask_credentials(joined)
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"


def list_paths(paths: Sequence[str]) -> str:
    """The first few paths, quoted and comma-separated, with a count of the rest."""
    shown = ", ".join(f'"{path}"' for path in paths[:PATHS_SHOWN])
    hidden = len(paths) - PATHS_SHOWN
    return f"{shown} and {hidden} more" if hidden > 0 else shown


class GitCommandError(GitError):
    """A git command failed; ``stderr`` is git's own words, bounded and on one line."""

    def __init__(self, command: str, returncode: int, stderr: str) -> None:
        self.command = command
        self.returncode = returncode
        self.stderr = one_line(stderr)
        detail = f": {self.stderr}" if self.stderr else ""
        super().__init__(f"git {command} failed (exit {returncode}){detail}")


class NotARepositoryError(GitError, InputError):
    """The path is not the top level of a git repository usable for this purpose."""


class RepoLockTimeoutError(GitError):
    """Another holder kept the repository's lock for longer than the timeout."""


class MergeConflictError(GitError):
    """Merging two commits would conflict; ``paths`` are the conflicted files."""

    def __init__(self, what: str, paths: Sequence[str]) -> None:
        self.paths = tuple(paths)
        super().__init__(f"{what} conflicts in {list_paths(self.paths)}")


class MergeRaceError(GitError):
    """The target branch moved under every attempt to update it."""


@dataclass(frozen=True, slots=True)
class RefusedFile:
    """A file a task may not commit, and why (never the secret itself)."""

    path: str
    reason: str


class CommitRefusedError(GitError):
    """A task's changes hold files that must never be committed; nothing was committed."""

    def __init__(self, refused: Sequence[RefusedFile]) -> None:
        self.refused = tuple(refused)
        shown = "; ".join(f'"{item.path}" {item.reason}' for item in self.refused[:PATHS_SHOWN])
        hidden = len(self.refused) - PATHS_SHOWN
        more = f"; and {hidden} more" if hidden > 0 else ""
        super().__init__(f"nothing was committed: refused {shown}{more}")


class TaskBranchError(GitError):
    """The agent switched its worktree off the task branch or moved the branch off its start."""


class WorktreeError(GitError):
    """A worktree or branch operation was refused (exists, checked out, in the wrong place)."""
