"""Repositories for tickets that work on one: worktrees, commits, merges, locks, deliveries.

A low layer: it knows nothing of the queue, the daemon or settings; everything it needs is
passed in as plain values, and it runs git synchronously (callers use a thread).

    runner      git with a fixed environment (hooks off, no user config, fixed identity)
    lock        one flock per repository, across threads and processes
    errors      how an operation failed
"""

from __future__ import annotations

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
from swarmd.git.runner import GitResult, GitRunner, Identity

__all__ = [
    "CommitRefusedError",
    "GitCommandError",
    "GitResult",
    "GitRunner",
    "Identity",
    "MergeConflictError",
    "MergeRaceError",
    "NotARepositoryError",
    "RefusedFile",
    "RepoLock",
    "RepoLockTimeoutError",
    "TaskBranchError",
    "WorktreeError",
]
