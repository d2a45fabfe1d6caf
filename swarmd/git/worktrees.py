"""Worktrees of tasks: add, list, lock, remove, and reconcile at start-up.

Each task works in a worktree of its own, on a branch of its own, outside the user's
checkout: creating one writes only the new branch, the worktree's metadata under the common
dir and the new directory, never the user's HEAD, index or files. A worktree is removed only
when it is clean and its commit is reachable from the integration branch (or another given
ref); never with ``--force`` on work that is not merged.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from swarmd.git.errors import GitCommandError, WorktreeError, list_paths
from swarmd.git.repository import Repository, branch_ref

_BRANCH_PREFIX = "refs/heads/"


@dataclass(frozen=True, slots=True)
class Worktree:
    """One entry of ``git worktree list --porcelain``."""

    path: Path
    head: str | None = None
    branch: str | None = None
    """The branch's short name; ``None`` when HEAD is detached (or the repository is bare)."""
    bare: bool = False
    locked: str | None = None
    """Why it is locked (``""`` when no reason was given); ``None`` when it is not locked."""
    prunable: str | None = None
    """Why git would prune it (its directory is gone); ``None`` when it would not."""


@dataclass(frozen=True, slots=True)
class Removal:
    """What ``remove_worktree`` did: whether the worktree went, and if not, why."""

    path: Path
    removed: bool
    reason: str
    branch_deleted: bool = False


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """Worktrees under swarmd's own directory, compared with those it believes it owns."""

    pruned: tuple[Worktree, ...]
    """Owned or not, their directories were gone: their metadata was pruned, branches kept."""
    unknown: tuple[Worktree, ...]
    """Present under the directory but not owned: reported, never touched."""
    missing: tuple[Path, ...]
    """Owned, but git knows no worktree there."""


def parse_worktree_list(output: str) -> list[Worktree]:
    """The entries of ``git worktree list --porcelain -z`` output, the main worktree first."""
    entries: list[Worktree] = []
    fields: dict[str, str] = {}
    for line in [*output.split("\0"), ""]:
        if line:
            key, _, value = line.partition(" ")
            fields[key] = value
            continue
        if "worktree" in fields:
            branch = fields.get("branch")
            entries.append(
                Worktree(
                    path=Path(fields["worktree"]),
                    head=fields.get("HEAD"),
                    branch=branch.removeprefix(_BRANCH_PREFIX) if branch else None,
                    bare="bare" in fields,
                    locked=fields.get("locked"),
                    prunable=fields.get("prunable"),
                )
            )
        fields = {}
    return entries


def list_worktrees(repo: Repository) -> list[Worktree]:
    """Every worktree of the repository, the main one (the user's checkout) first."""
    # Under the lock: `worktree add` writes a new worktree's metadata files one by one, and
    # a listing that reads them half-written fails ("failed to read .../commondir").
    with repo.lock:
        return parse_worktree_list(repo.probe("worktree", "list", "--porcelain", "-z").text)


def find_worktree(repo: Repository, path: Path) -> Worktree | None:
    """The worktree at ``path``, or ``None`` when the repository has none there."""
    wanted = os.path.realpath(path)
    for entry in list_worktrees(repo)[1:]:
        if os.path.realpath(entry.path) == wanted:
            return entry
    return None


def add_worktree(repo: Repository, branch: str, start_commit: str, path: Path) -> Worktree:
    """Create ``branch`` at ``start_commit`` and check it out in a new worktree at ``path``.

    ``path`` must lie outside the user's checkout and its git dir, and the branch must not
    exist yet (``WorktreeError``). The user's HEAD, index and files are never touched.
    """
    target = Path(os.path.abspath(path))
    _refuse_inside_repository(repo, target)
    commit = repo.resolve_commit(start_commit)
    ref = branch_ref(branch)
    with repo.lock:
        if repo.branch_tip(branch) is not None:
            raise WorktreeError(f"branch {branch} already exists in {repo.path}")
        # --no-checkout: only the branch and the worktree's metadata are shared state, so
        # only they are written under the lock; the files are checked out after it.
        repo.git("worktree", "add", "--quiet", "--no-checkout", "-b", branch, str(target), commit)
    try:
        repo.git("reset", "--quiet", "--hard", commit, cwd=target)
    except GitCommandError:
        # Nothing but the start commit is on this branch yet: forcing it away loses no work.
        with repo.lock:
            repo.git("worktree", "remove", "--force", str(target), accept=(0, 128))
            repo.git("update-ref", "-d", ref, commit, accept=(0, 128))
        raise
    return Worktree(path=target, head=commit, branch=branch)


def lock_worktree(repo: Repository, path: Path, reason: str) -> None:
    """Lock a worktree kept for a person (a conflict to resolve): prune and remove skip it."""
    with repo.lock:
        repo.git("worktree", "lock", "--reason", reason, str(path))


def unlock_worktree(repo: Repository, path: Path) -> None:
    """Undo ``lock_worktree``."""
    with repo.lock:
        repo.git("worktree", "unlock", str(path))


def remove_worktree(
    repo: Repository, path: Path, *, merged_into: str, delete_branch: bool = True
) -> Removal:
    """Remove the worktree at ``path`` (and its branch) only if that loses no work.

    It stays when it is not a task worktree, is locked, has uncommitted or untracked changes,
    or holds commits that ``merged_into`` (a branch or any ref) does not contain; the
    ``Removal`` says which. A worktree whose directory is already gone is pruned likewise.
    """
    if os.path.realpath(path) == os.path.realpath(repo.path):
        return Removal(path, False, "is the repository's own checkout")
    entry = find_worktree(repo, path)
    if entry is None:
        return Removal(path, False, "is not a worktree of this repository")
    refusal = _removal_refusal(repo, entry, merged_into)
    if refusal:
        return Removal(entry.path, False, refusal)
    with repo.lock:
        # No --force: should a file have appeared since the check, git refuses for us.
        repo.git("worktree", "remove", str(entry.path))
        deleted = bool(
            delete_branch
            and entry.branch
            and entry.head
            and repo.delete_branch(entry.branch, entry.head)
        )
    return Removal(entry.path, True, "removed", branch_deleted=deleted)


def reconcile_worktrees(repo: Repository, prefix: Path, owned: Iterable[Path]) -> Reconciliation:
    """Compare git's worktrees under ``prefix`` with those swarmd believes it owns.

    Worktrees whose directories are gone are pruned (metadata only; their branches, which may
    hold work, stay). Unknown ones are reported. Nothing outside ``prefix`` is looked at, so
    a person's own worktrees elsewhere are never touched.
    """
    root = os.path.realpath(prefix)
    owned_paths = {os.path.realpath(path): Path(path) for path in owned}
    under_prefix = [
        entry
        for entry in list_worktrees(repo)[1:]
        if os.path.commonpath([root, os.path.realpath(entry.path)]) == root
    ]
    pruned: list[Worktree] = []
    unknown: list[Worktree] = []
    for entry in under_prefix:
        real = os.path.realpath(entry.path)
        if not entry.path.exists() and entry.locked is None:
            with repo.lock:
                # `worktree prune` would prune every repository's worktree, even outside
                # the prefix; `worktree remove` of a gone directory drops just this one.
                repo.git("worktree", "remove", str(entry.path))
            pruned.append(entry)
        elif real not in owned_paths:
            unknown.append(entry)
    listed = {os.path.realpath(entry.path) for entry in under_prefix}
    missing = tuple(path for real, path in owned_paths.items() if real not in listed)
    return Reconciliation(tuple(pruned), tuple(unknown), missing)


def _removal_refusal(repo: Repository, entry: Worktree, merged_into: str) -> str | None:
    if entry.bare or (entry.branch is None and entry.head is None):
        return "is not a task worktree"
    if entry.locked is not None:
        return f"is locked ({entry.locked or 'no reason given'})"
    if entry.path.exists():
        status = repo.probe(
            "status", "--porcelain", "-z", "--no-renames", "--untracked-files=all", cwd=entry.path
        ).fields()
        if status:
            changed = [line[3:] for line in status if len(line) > 3]
            return f"has uncommitted changes ({list_paths(changed)})"
    if entry.head and not repo.is_ancestor(entry.head, merged_into):
        return f"holds commits that {merged_into} does not contain"
    return None


def _refuse_inside_repository(repo: Repository, target: Path) -> None:
    real = os.path.realpath(target)
    for inside in (repo.path, repo.common_dir):
        root = os.path.realpath(inside)
        if os.path.commonpath([root, real]) == root:
            raise WorktreeError(
                f"{target} lies inside {inside}; a task worktree must be outside it"
            )
