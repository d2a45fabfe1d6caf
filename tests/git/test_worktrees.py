"""Task worktrees: created outside the checkout, listed, locked, removed only when merged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from swarmd.git import (
    Repository,
    WorktreeError,
    add_worktree,
    list_worktrees,
    lock_worktree,
    merge_into,
    reconcile_worktrees,
    remove_worktree,
    task_branch,
    unlock_worktree,
)
from swarmd.git.worktrees import parse_worktree_list
from tests.support.repos import TICKET, Person, checkout_state, run_task, start_task, write

INTEGRATION = "swarmd/7/integration"


def test_add_worktree_checks_out_a_new_branch_and_leaves_the_checkout_alone(
    project: Repository, base: str, work_dir: Path, person: Person
) -> None:
    write(project.path / "wip.txt", "unstaged\n")
    before = checkout_state(person, project.path)

    entry = add_worktree(project, "swarmd/7/copy", "main", work_dir / "copy")

    assert entry.head == base
    assert (work_dir / "copy" / "app.py").read_text() == "print('hello')\n"
    assert person.git(work_dir / "copy", "status", "--porcelain") == ""
    assert (
        person.git(work_dir / "copy", "symbolic-ref", "HEAD").strip() == "refs/heads/swarmd/7/copy"
    )
    assert checkout_state(person, project.path) == before


def test_add_worktree_refuses_a_path_inside_the_checkout(project: Repository, base: str) -> None:
    with pytest.raises(WorktreeError, match="must be outside"):
        add_worktree(project, "swarmd/7/inside", base, project.path / "tasks" / "inside")
    with pytest.raises(WorktreeError, match="must be outside"):
        add_worktree(project, "swarmd/7/inside", base, project.common_dir / "tasks")
    assert project.branch_tip("swarmd/7/inside") is None


def test_add_worktree_refuses_an_existing_branch(
    project: Repository, base: str, work_dir: Path
) -> None:
    add_worktree(project, "swarmd/7/copy", base, work_dir / "first")

    with pytest.raises(WorktreeError, match="already exists"):
        add_worktree(project, "swarmd/7/copy", base, work_dir / "second")
    assert not (work_dir / "second").exists()


def test_hooks_do_not_run_when_a_worktree_is_added(
    project: Repository, base: str, work_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "hook-ran"
    hook = write(project.common_dir / "hooks" / "post-checkout", f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)

    add_worktree(project, "swarmd/7/copy", base, work_dir / "copy")

    assert not marker.exists()


def test_list_worktrees_reads_branches_detached_heads_locks_and_gone_directories(
    project: Repository, base: str, work_dir: Path, person: Person
) -> None:
    add_worktree(project, "swarmd/7/a", base, work_dir / "a")
    add_worktree(project, "swarmd/7/b", base, work_dir / "b")
    add_worktree(project, "swarmd/7/c", base, work_dir / "c")
    person.git(work_dir / "b", "switch", "--quiet", "--detach")
    lock_worktree(project, work_dir / "c", "conflict kept for a person")
    shutil.rmtree(work_dir / "a")

    entries = {entry.path.name: entry for entry in list_worktrees(project)}

    assert entries["project"].branch == "main"
    assert entries["a"].prunable is not None
    assert entries["b"].branch is None and entries["b"].head == base
    assert entries["c"].locked == "conflict kept for a person"


def test_parse_worktree_list_reads_bare_and_reasonless_locks() -> None:
    output = (
        "worktree /srv/remote.git\0bare\0\0"
        "worktree /w/one\0HEAD abc\0branch refs/heads/swarmd/1/one\0locked\0\0"
    )

    bare, one = parse_worktree_list(output)

    assert bare.bare and bare.branch is None
    assert (one.branch, one.locked, one.prunable) == ("swarmd/1/one", "", None)


def test_remove_worktree_removes_a_clean_merged_worktree_and_its_branch(
    project: Repository, base: str, work_dir: Path
) -> None:
    task = run_task(project, work_dir, "done", base, {"done.txt": "1\n"})
    merge_into(project, INTEGRATION, task.commit, create_at=base)

    removal = remove_worktree(project, work_dir / str(TICKET) / "done", merged_into=INTEGRATION)

    assert (removal.removed, removal.branch_deleted) == (True, True)
    assert not (work_dir / str(TICKET) / "done").exists()
    assert project.branch_tip(task_branch("swarmd", TICKET, "done")) is None


def test_remove_worktree_refuses_unmerged_work(
    project: Repository, base: str, work_dir: Path
) -> None:
    run_task(project, work_dir, "pending", base, {"pending.txt": "1\n"})
    merge_into(project, INTEGRATION, base, create_at=base)
    path = work_dir / str(TICKET) / "pending"

    removal = remove_worktree(project, path, merged_into=INTEGRATION)

    assert not removal.removed
    assert removal.reason == f"holds commits that {INTEGRATION} does not contain"
    assert (path / "pending.txt").exists()
    assert project.branch_tip(task_branch("swarmd", TICKET, "pending")) is not None


@pytest.mark.parametrize("change", ["modified", "untracked"])
def test_remove_worktree_refuses_a_dirty_worktree(
    project: Repository, base: str, work_dir: Path, change: str
) -> None:
    path = start_task(project, work_dir, "dirty", base)
    write(path / ("app.py" if change == "modified" else "new.txt"), "changed\n")

    removal = remove_worktree(project, path, merged_into="main")

    assert not removal.removed
    assert removal.reason.startswith("has uncommitted changes")
    assert path.exists()


def test_remove_worktree_refuses_a_locked_worktree_until_unlocked(
    project: Repository, base: str, work_dir: Path
) -> None:
    path = start_task(project, work_dir, "kept", base)
    lock_worktree(project, path, "merge conflict in app.py")

    refused = remove_worktree(project, path, merged_into="main")
    unlock_worktree(project, path)
    removed = remove_worktree(project, path, merged_into="main")

    assert refused.reason == "is locked (merge conflict in app.py)"
    assert removed.removed


def test_remove_worktree_refuses_the_checkout_and_strangers(
    project: Repository, work_dir: Path
) -> None:
    own = remove_worktree(project, project.path, merged_into="main")
    stranger = remove_worktree(project, work_dir / "nowhere", merged_into="main")

    assert (own.removed, own.reason) == (False, "is the repository's own checkout")
    assert (stranger.removed, stranger.reason) == (False, "is not a worktree of this repository")


def test_reconcile_prunes_gone_worktrees_under_the_prefix_only(
    project: Repository, base: str, tmp_path: Path, work_dir: Path, person: Person
) -> None:
    owned = start_task(project, work_dir, "owned", base)
    gone = start_task(project, work_dir, "gone", base)
    stranger = start_task(project, work_dir, "stranger", base)
    persons_own = tmp_path / "persons-own"
    person.git(project.path, "worktree", "add", "--quiet", str(persons_own))
    shutil.rmtree(gone)
    shutil.rmtree(persons_own)
    believed_missing = work_dir / str(TICKET) / "never-made"

    report = reconcile_worktrees(project, work_dir, [owned, gone, believed_missing])

    assert [entry.path for entry in report.pruned] == [gone]
    assert [entry.path for entry in report.unknown] == [stranger]
    assert report.missing == (believed_missing,)
    remaining = {entry.path for entry in list_worktrees(project)}
    assert persons_own in remaining
    assert gone not in remaining
    assert project.branch_tip(task_branch("swarmd", TICKET, "gone")) == base
