"""Many tasks on one repository at once, from threads and from processes: nothing is lost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from swarmd.git import Repository, list_worktrees
from tests.support.git_swarm_worker import integration_branch, run_tasks
from tests.support.repos import Person, checkout_state

ROOT = Path(__file__).resolve().parents[2]
TASKS_PER_ROUND = 32
PROCESSES = 4
THREADS_PER_PROCESS = 3


def _assert_round_is_complete(
    project: Repository, person: Person, ticket: int, commits: list[str]
) -> None:
    tip = project.branch_tip(integration_branch(ticket))
    assert tip is not None
    lost = [commit for commit in commits if not project.is_ancestor(commit, tip)]
    assert lost == []
    assert len(set(commits)) == TASKS_PER_ROUND
    assert [entry.path for entry in list_worktrees(project)] == [project.path]
    branches = person.git(
        project.path, "for-each-ref", "--format=%(refname)", f"refs/heads/swarmd/{ticket}/"
    )
    assert branches.split() == [f"refs/heads/{integration_branch(ticket)}"]
    files = person.git(project.path, "ls-tree", "--name-only", tip).split()
    assert len([name for name in files if name.startswith("task-")]) == TASKS_PER_ROUND


def test_32_tasks_from_10_threads_lose_nothing_and_leave_nothing(
    project: Repository, base: str, work_dir: Path, person: Person
) -> None:
    before = checkout_state(person, project.path)
    for ticket in (1, 2, 3):
        tasks = [f"task-{index:02}" for index in range(TASKS_PER_ROUND)]

        commits = run_tasks(project, work_dir, ticket, tasks, base, threads=10)

        _assert_round_is_complete(project, person, ticket, commits)
    assert checkout_state(person, project.path) == before


def test_32_tasks_from_4_processes_lose_nothing_and_leave_nothing(
    project: Repository, base: str, work_dir: Path, person: Person
) -> None:
    before = checkout_state(person, project.path)
    for ticket in (1, 2):
        tasks = [f"task-{index:02}" for index in range(TASKS_PER_ROUND)]
        shares = [tasks[start::PROCESSES] for start in range(PROCESSES)]
        processes = [_start_worker(project, work_dir, ticket, base, share) for share in shares]
        outputs = [process.communicate(timeout=50) for process in processes]

        failures = [
            err for process, (_, err) in zip(processes, outputs, strict=True) if process.returncode
        ]
        assert failures == []
        commits = [line for out, _ in outputs for line in out.split()]
        _assert_round_is_complete(project, person, ticket, commits)
    assert checkout_state(person, project.path) == before


def _start_worker(
    project: Repository, work_dir: Path, ticket: int, base: str, tasks: list[str]
) -> subprocess.Popen[str]:
    argv = [str(project.path), str(work_dir), str(ticket), base, str(THREADS_PER_PROCESS), *tasks]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.git_swarm_worker", *argv],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
