"""A ticket's repository, fixed when the ticket is submitted: which repository, from which
commit, and how its work is delivered.

The base is resolved to a commit once, at submit: every task of the ticket then starts from
the same commit even if the branch moves meanwhile, and a base that does not exist is refused
at once, with nothing written, rather than failing the first task later.

Branches: the ticket's ``<prefix>/<ticket>`` and each task's ``<prefix>/tasks/<ticket>/<task>``
(git cannot hold both ``swarmd/42`` and ``swarmd/42/html``: one ref would be a directory of
the other).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmd.errors import GitError, InputError
from swarmd.git.errors import NotARepositoryError
from swarmd.git.registry import DELIVERIES, RepoEntry, RepoRegistry
from swarmd.git.repository import Repository, task_branch


@dataclass(frozen=True, slots=True)
class RepoBinding:
    """A ticket's repository, fixed when it is submitted."""

    entry: RepoEntry
    base_ref: str  # what the ticket asked for (a branch name, usually)
    base_commit: str  # what that was when it was submitted
    deliver: str  # branch | push | pr

    def ticket_branch(self, ticket_id: int) -> str:
        return f"{self.entry.branch_prefix}/{ticket_id}"

    def task_branch(self, ticket_id: int, task: str) -> str:
        return task_branch(f"{self.entry.branch_prefix}/tasks", ticket_id, task)

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo": self.entry.to_dict(),
            "base_ref": self.base_ref,
            "base_commit": self.base_commit,
            "deliver": self.deliver,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RepoBinding:
        return cls(
            entry=RepoEntry.from_dict(dict(data["repo"])),
            base_ref=str(data["base_ref"]),
            base_commit=str(data["base_commit"]),
            deliver=str(data["deliver"]),
        )


def bind_repository(
    registry: RepoRegistry,
    repo: str,
    *,
    base: str | None = None,
    deliver: str | None = None,
    home: Path | None = None,
) -> RepoBinding:
    """Resolve a ticket's ``repo``, ``base`` and ``deliver``; ``InputError`` when they do not
    name a repository, a commit of it, or a delivery.

    ``home`` (``SWARMD_HOME``) must not lie inside the repository: task worktrees live there.
    """
    entry = registry.resolve(repo)
    chosen = deliver or entry.deliver
    if chosen not in DELIVERIES:
        raise InputError(f"deliver must be one of {', '.join(DELIVERIES)}, not {chosen!r}")
    if chosen == "pr" and entry.forge is None:
        raise InputError(f'deliver = "pr" needs a forge for repository {entry.name!r}')
    try:
        opened = Repository.open(entry.path)
        base_ref = base or entry.base
        base_commit = opened.resolve_commit(base_ref)
    except NotARepositoryError as exc:
        raise InputError(f"repository {entry.name!r}: {exc}") from exc
    except GitError as exc:
        raise InputError(f"repository {entry.name!r} has no commit {base or entry.base!r}") from exc
    if home is not None and _inside(home, opened.path):
        raise InputError(
            f"SWARMD_HOME {home} lies inside repository {entry.name!r}: task worktrees "
            "must live outside it"
        )
    return RepoBinding(entry, base_ref, base_commit, chosen)


def _inside(path: Path, top: Path) -> bool:
    try:
        path.resolve().relative_to(top.resolve())
    except ValueError:
        return False
    return True
