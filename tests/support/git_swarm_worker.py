"""Whole tasks run as the daemon would, for the concurrency tests: in threads, or as a process.

As a process: ``python -m tests.support.git_swarm_worker REPO WORK_DIR TICKET BASE THREADS TASK...``
prints each task's commit on a line of its own, or a traceback and exits 1.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from swarmd.git import (
    GitRunner,
    Repository,
    TaskTrailers,
    add_worktree,
    commit_task,
    merge_into,
    remove_worktree,
    task_branch,
)


def integration_branch(ticket: int) -> str:
    return f"swarmd/{ticket}/integration"


def run_one_task(repo: Repository, work_dir: Path, ticket: int, task: str, base: str) -> str:
    """Worktree, a file of the agent's, commit, merge, cleanup; the task's commit."""
    branch = task_branch("swarmd", ticket, task)
    path = work_dir / str(ticket) / task
    add_worktree(repo, branch, base, path)
    (path / f"{task}.txt").write_text(f"{task}\n")
    result = commit_task(
        repo,
        path,
        branch=branch,
        start_commit=base,
        message=f"Task {task}",
        trailers=TaskTrailers(ticket, task, 1),
    )
    integration = integration_branch(ticket)
    merge_into(repo, integration, result.commit, create_at=base)
    removal = remove_worktree(repo, path, merged_into=integration)
    if not removal.removed:
        raise AssertionError(f"{path} was not removed: it {removal.reason}")
    return result.commit


def run_tasks(
    repo: Repository, work_dir: Path, ticket: int, tasks: list[str], base: str, threads: int
) -> list[str]:
    """Every task on a pool of ``threads`` threads; their commits."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(run_one_task, repo, work_dir, ticket, task, base) for task in tasks]
        return [future.result() for future in futures]


def main(argv: list[str]) -> int:
    repo_path, work_dir, ticket, base, threads, *tasks = argv
    runner = GitRunner(inherited_env={"PATH": os.environ["PATH"]})
    repo = Repository.open(Path(repo_path), runner=runner, lock_timeout=30)
    for commit in run_tasks(repo, Path(work_dir), int(ticket), tasks, base, int(threads)):
        print(commit)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
