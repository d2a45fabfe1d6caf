"""Repositories for tickets that work on one: worktrees, commits, merges, locks, deliveries.

A low layer: it knows nothing of the queue, the daemon or settings; everything it needs is
passed in as plain values, and it runs git synchronously (callers use a thread).

    runner      git with a fixed environment (hooks off, no user config, fixed identity)
    lock        one flock per repository, across threads and processes
    repository  open and check a repository; resolve, compare and move refs
    worktrees   add, list, lock, remove and reconcile task worktrees
    commits     commit a task's work (deny rules, trailers)
    denylist    what a task may never commit
    trailers    the Swarmd-Ticket / Swarmd-Task / Swarmd-Attempt trailers
    merging     start points and merges into the integration branch, without a checkout
    delivery    bundles, patches, and the commits of each task
    remotes     push and fetch through the remote's own configuration
    forges      pull requests on GitHub and Gitea/Forgejo (imported on its own: it needs httpx)
    errors      how an operation failed
"""

from __future__ import annotations

from swarmd.git.commits import TaskCommit, commit_task
from swarmd.git.delivery import (
    Bundle,
    CommitInfo,
    bundle,
    commits_between,
    commits_by_task,
    format_patches,
)
from swarmd.git.denylist import DenyRules
from swarmd.git.errors import (
    CommitRefusedError,
    GitCommandError,
    MergeConflictError,
    MergeRaceError,
    NotARepositoryError,
    RefusedFile,
    RepoLockTimeoutError,
    TaskBranchError,
    WorktreeError,
)
from swarmd.git.lock import RepoLock
from swarmd.git.merging import MergeKind, MergeResult, merge_into, merge_trees, start_point
from swarmd.git.remotes import PushResult, fetch, push
from swarmd.git.repository import Repository, task_branch
from swarmd.git.runner import GitResult, GitRunner, Identity
from swarmd.git.trailers import TaskTrailers, with_trailers
from swarmd.git.worktrees import (
    Reconciliation,
    Removal,
    Worktree,
    add_worktree,
    list_worktrees,
    lock_worktree,
    reconcile_worktrees,
    remove_worktree,
    unlock_worktree,
)

__all__ = [
    "Bundle",
    "CommitInfo",
    "CommitRefusedError",
    "DenyRules",
    "GitCommandError",
    "GitResult",
    "GitRunner",
    "Identity",
    "MergeConflictError",
    "MergeKind",
    "MergeRaceError",
    "MergeResult",
    "NotARepositoryError",
    "PushResult",
    "Reconciliation",
    "RefusedFile",
    "Removal",
    "RepoLock",
    "RepoLockTimeoutError",
    "Repository",
    "TaskBranchError",
    "TaskCommit",
    "TaskTrailers",
    "Worktree",
    "WorktreeError",
    "add_worktree",
    "bundle",
    "commit_task",
    "commits_between",
    "commits_by_task",
    "fetch",
    "format_patches",
    "list_worktrees",
    "lock_worktree",
    "merge_into",
    "merge_trees",
    "push",
    "reconcile_worktrees",
    "remove_worktree",
    "start_point",
    "task_branch",
    "unlock_worktree",
    "with_trailers",
]
