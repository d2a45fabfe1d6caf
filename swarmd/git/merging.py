"""Merges without a checkout: a task's start point, and a task's result into an integration branch.

``git merge-tree --write-tree`` (git 2.38 or later) merges two commits into a tree in the
object store alone; ``commit-tree`` makes the merge commit; ``update-ref NEW OLD`` moves the
branch only if nobody moved it meanwhile. No worktree or index is touched, so merges of many
tasks run side by side and only the final ref update takes the repository's lock. A merge that
loses the race to another is computed again on the new tip, under the lock, rather than lost;
only a writer outside swarmd's lock (a person's own git) can make it lose again.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from swarmd.errors import GitError
from swarmd.git.errors import GitCommandError, MergeConflictError, MergeRaceError
from swarmd.git.repository import Repository
from swarmd.git.worktrees import list_worktrees

DEFAULT_MERGE_ATTEMPTS = 8


class MergeKind(enum.StrEnum):
    ALREADY_MERGED = "already_merged"  # the branch already contains the commit: nothing moved
    FAST_FORWARD = "fast_forward"  # the branch moved to the commit itself
    MERGE_COMMIT = "merge_commit"  # a new commit with the old tip and the commit as parents


@dataclass(frozen=True, slots=True)
class TreeMerge:
    """The result of ``merge-tree``: a tree when clean, the conflicted paths when not."""

    tree: str | None
    conflicts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MergeResult:
    """How a commit went into a branch."""

    branch: str
    commit: str
    """The branch's tip afterwards."""
    previous: str
    """The tip the merge was made on (after any lost races)."""
    kind: MergeKind
    created: bool
    """Whether this call created the branch (at ``create_at``) first."""
    attempts: int


def merge_trees(repo: Repository, ours: str, theirs: str) -> TreeMerge:
    """Merge two commits into a tree in the object store; no worktree, index or ref changes."""
    args = ("merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", ours, theirs)
    result = repo.git(*args, accept=(0, 1))
    fields = result.fields()
    if not fields:
        # merge-tree exits 1 also for a name it cannot resolve, printing nothing on stdout.
        raise GitCommandError("merge-tree", result.returncode, result.stderr.decode())
    if result.returncode == 0:
        return TreeMerge(fields[0])
    return TreeMerge(None, tuple(dict.fromkeys(fields[1:])))


def start_point(repo: Repository, base: str, upstreams: Sequence[str], *, message: str) -> str:
    """The commit a task starts from.

    No upstreams: the pinned ``base``. One: its commit. Several: their merge, made with
    ``merge-tree`` and ``commit-tree`` (upstreams another one already contains are dropped
    first); ``MergeConflictError`` names the conflicted paths, and nothing refers to the
    commits made before the conflict.
    """
    if not upstreams:
        return repo.resolve_commit(base)
    commits = list(dict.fromkeys(repo.resolve_commit(upstream) for upstream in upstreams))
    if len(commits) > 1:
        independent = set(repo.probe("merge-base", "--independent", *commits).text.split())
        commits = [commit for commit in commits if commit in independent]
    tip = commits[0]
    for other in commits[1:]:
        merged = merge_trees(repo, tip, other)
        if merged.tree is None:
            raise MergeConflictError(
                f"merging upstream {other[:12]} into {tip[:12]}", merged.conflicts
            )
        tip = repo.commit_tree(merged.tree, [tip, other], message)
    return tip


def merge_into(
    repo: Repository,
    branch: str,
    task_commit: str,
    *,
    create_at: str | None = None,
    message: str | None = None,
    max_attempts: int = DEFAULT_MERGE_ATTEMPTS,
    before_update: Callable[[int], None] | None = None,
) -> MergeResult:
    """Merge ``task_commit`` into ``branch`` without a checkout.

    A missing branch is created at ``create_at`` (the ticket's pinned base) when given.
    A commit the branch already contains changes nothing; one that descends from the tip is a
    fast-forward; anything else gets a merge commit with both parents. A conflict raises
    ``MergeConflictError`` with the paths, leaving the branch as it was. ``before_update`` is
    called with the attempt number just before each ref update (tests use it to lose a race).
    """
    commit = repo.resolve_commit(task_commit)
    _refuse_checked_out(repo, branch)
    text = message or f"swarmd: merge {commit[:12]} into {branch}"
    old = repo.branch_tip(branch)
    created = False
    if old is None:
        if create_at is None:
            raise GitError(f"branch {branch} does not exist in {repo.path}")
        old = repo.resolve_commit(create_at)
        created = repo.update_branch(branch, old, None, message=f"swarmd: create at {old}")
        if not created:  # another merge created it first: just as good
            old = repo.branch_tip(branch)
    for attempt in range(1, max_attempts + 1):
        # The first attempt merges outside the lock, so the merges of many tasks overlap.
        # After a lost race the merge is made again under the lock: in a burst of merges,
        # optimistic retries would keep overtaking each other.
        guard: contextlib.AbstractContextManager[None] = (
            repo.lock.held() if attempt > 1 else contextlib.nullcontext()
        )
        with guard:
            if attempt > 1:
                old = repo.branch_tip(branch)
            if old is None:
                raise GitError(f"branch {branch} was deleted during a merge into it")
            common = repo.merge_base(old, commit)
            if common == commit:
                return MergeResult(branch, old, old, MergeKind.ALREADY_MERGED, created, attempt)
            if common == old:
                new, kind = commit, MergeKind.FAST_FORWARD
            else:
                new, kind = _merge_commit(repo, branch, old, commit, text), MergeKind.MERGE_COMMIT
            if before_update is not None:
                before_update(attempt)
            if repo.update_branch(branch, new, old, message=f"swarmd: {kind} {commit}"):
                return MergeResult(branch, new, old, kind, created, attempt)
    raise MergeRaceError(
        f"{branch} moved during each of {max_attempts} attempts to merge {commit[:12]} into it"
    )


def _merge_commit(repo: Repository, branch: str, old: str, commit: str, message: str) -> str:
    merged = merge_trees(repo, old, commit)
    if merged.tree is None:
        raise MergeConflictError(f"merging {commit[:12]} into {branch}", merged.conflicts)
    return repo.commit_tree(merged.tree, [old, commit], message)


def _refuse_checked_out(repo: Repository, branch: str) -> None:
    # Moving a branch that a checkout has as its HEAD would leave that checkout's index and
    # files behind it: to its owner it would look as if they had reverted the merge.
    for entry in list_worktrees(repo):
        if entry.branch == branch:
            raise GitError(
                f"branch {branch} is checked out at {entry.path}; it cannot be merged into"
            )
