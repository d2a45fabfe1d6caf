"""Start points and merges into the integration branch, all without a checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmd.errors import GitError
from swarmd.git import (
    MergeConflictError,
    MergeKind,
    Repository,
    merge_into,
    start_point,
    task_branch,
)
from tests.support.repos import Person, checkout_state, finish_task, run_task, start_task, write

INTEGRATION = "swarmd/7/integration"


def test_fan_out_and_fan_in_merge_everything_without_touching_the_checkout(
    project: Repository, base: str, work_dir: Path, person: Person
) -> None:
    write(project.path / "notes.txt", "the person's uncommitted work\n")
    person.git(project.path, "add", "notes.txt")
    write(project.path / "scratch.txt", "untracked\n")
    before = checkout_state(person, project.path)

    fan_out = {
        name: run_task(project, work_dir, name, base, {f"{name}.txt": f"{name}\n"})
        for name in ("alpha", "beta", "gamma")
    }
    upstreams = [result.commit for result in fan_out.values()]
    fan_in_start = start_point(project, base, upstreams, message="Start of task summary")
    worktree = start_task(project, work_dir, "summary", fan_in_start)
    seen = sorted(path.name for path in worktree.glob("*.txt"))
    write(worktree / "summary.md", " ".join(seen) + "\n")
    fan_in = finish_task(project, worktree, "summary", fan_in_start)
    for result in [*fan_out.values(), fan_in]:
        merge_into(project, INTEGRATION, result.commit, create_at=base)

    assert seen == ["alpha.txt", "beta.txt", "gamma.txt"]
    tip = project.branch_tip(INTEGRATION)
    assert tip is not None
    files = person.git(project.path, "ls-tree", "-r", "--name-only", tip).split()
    assert sorted(files) == [
        "README.md",
        "alpha.txt",
        "app.py",
        "beta.txt",
        "gamma.txt",
        "summary.md",
    ]
    assert all(project.is_ancestor(commit, tip) for commit in [*upstreams, fan_in.commit])
    assert checkout_state(person, project.path) == before


def test_start_point_of_one_upstream_is_its_commit(
    project: Repository, base: str, work_dir: Path
) -> None:
    upstream = run_task(project, work_dir, "only", base, {"only.txt": "1\n"})

    assert start_point(project, base, [upstream.commit], message="unused") == upstream.commit
    assert start_point(project, base, [], message="unused") == base


def test_start_point_drops_upstreams_another_one_contains(
    project: Repository, base: str, work_dir: Path
) -> None:
    first = run_task(project, work_dir, "first", base, {"a.txt": "a\n"})
    second = run_task(project, work_dir, "second", first.commit, {"b.txt": "b\n"})

    start = start_point(project, base, [first.commit, second.commit], message="unused")

    assert start == second.commit


def test_start_point_of_conflicting_upstreams_names_the_files(
    project: Repository, base: str, work_dir: Path
) -> None:
    left = run_task(project, work_dir, "left", base, {"app.py": "print('left')\n"})
    right = run_task(project, work_dir, "right", base, {"app.py": "print('right')\n"})

    with pytest.raises(MergeConflictError) as caught:
        start_point(project, base, [left.commit, right.commit], message="Start of task both")

    assert caught.value.paths == ("app.py",)


def test_second_task_editing_the_same_line_fails_to_merge_and_leaves_the_branch(
    project: Repository, base: str, work_dir: Path
) -> None:
    first = run_task(project, work_dir, "first", base, {"app.py": "print('first')\n"})
    second = run_task(project, work_dir, "second", base, {"app.py": "print('second')\n"})
    merge_into(project, INTEGRATION, first.commit, create_at=base)
    before = project.branch_tip(INTEGRATION)

    with pytest.raises(MergeConflictError, match=r'conflicts in "app\.py"') as caught:
        merge_into(project, INTEGRATION, second.commit)

    assert caught.value.paths == ("app.py",)
    assert project.branch_tip(INTEGRATION) == before == first.commit


def test_first_merge_creates_the_branch_and_fast_forwards(
    project: Repository, base: str, work_dir: Path
) -> None:
    task = run_task(project, work_dir, "solo", base, {"solo.txt": "1\n"})

    result = merge_into(project, INTEGRATION, task.commit, create_at=base)

    assert (result.kind, result.created, result.previous) == (MergeKind.FAST_FORWARD, True, base)
    assert project.branch_tip(INTEGRATION) == task.commit


def test_merging_a_contained_commit_changes_nothing(
    project: Repository, base: str, work_dir: Path
) -> None:
    task = run_task(project, work_dir, "solo", base, {"solo.txt": "1\n"})
    merge_into(project, INTEGRATION, task.commit, create_at=base)

    again = merge_into(project, INTEGRATION, task.commit)
    idle = merge_into(project, INTEGRATION, base)

    assert again.kind == idle.kind == MergeKind.ALREADY_MERGED
    assert project.branch_tip(INTEGRATION) == task.commit


def test_merge_commit_has_the_old_tip_and_the_task_as_parents(
    project: Repository, base: str, work_dir: Path, person: Person
) -> None:
    one = run_task(project, work_dir, "one", base, {"one.txt": "1\n"})
    two = run_task(project, work_dir, "two", base, {"two.txt": "2\n"})
    merge_into(project, INTEGRATION, one.commit, create_at=base)

    result = merge_into(project, INTEGRATION, two.commit, message="Merge task two")

    assert result.kind == MergeKind.MERGE_COMMIT
    parents = person.git(project.path, "log", "-1", "--format=%P", result.commit).split()
    assert parents == [one.commit, two.commit]
    assert person.git(project.path, "log", "-1", "--format=%s", result.commit).strip() == (
        "Merge task two"
    )


def test_a_lost_update_ref_race_is_merged_again_not_lost(
    project: Repository, base: str, work_dir: Path
) -> None:
    ours = run_task(project, work_dir, "ours", base, {"ours.txt": "1\n"})
    theirs = run_task(project, work_dir, "theirs", base, {"theirs.txt": "2\n"})
    merge_into(project, INTEGRATION, base, create_at=base)
    raced: list[int] = []

    def another_merge_lands_first(attempt: int) -> None:
        raced.append(attempt)
        if attempt == 1:
            merge_into(project, INTEGRATION, theirs.commit)

    result = merge_into(project, INTEGRATION, ours.commit, before_update=another_merge_lands_first)

    assert raced == [1, 2]
    assert result.attempts == 2
    assert result.previous == theirs.commit
    tip = project.branch_tip(INTEGRATION)
    assert tip == result.commit
    assert project.is_ancestor(ours.commit, tip)
    assert project.is_ancestor(theirs.commit, tip)


def test_a_branch_checked_out_by_the_person_is_never_merged_into(
    project: Repository, base: str, work_dir: Path
) -> None:
    task = run_task(project, work_dir, "solo", base, {"solo.txt": "1\n"})

    with pytest.raises(GitError, match="checked out at"):
        merge_into(project, "main", task.commit)

    assert project.branch_tip("main") == base


def test_merging_into_a_missing_branch_without_a_base_is_refused(
    project: Repository, base: str, work_dir: Path
) -> None:
    task = run_task(project, work_dir, "solo", base, {"solo.txt": "1\n"})

    with pytest.raises(GitError, match="does not exist"):
        merge_into(project, INTEGRATION, task.commit)
    assert project.branch_tip(task_branch("swarmd", 7, "solo")) == task.commit
