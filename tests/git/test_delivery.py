"""Deliveries: a verified bundle, patches that apply, and the commits of each task."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmd.errors import GitError
from swarmd.git import (
    Repository,
    TaskTrailers,
    bundle,
    commits_between,
    commits_by_task,
    format_patches,
    merge_into,
    with_trailers,
)
from tests.support.repos import Person, run_task

INTEGRATION = "swarmd/7/integration"
TASKS = ("alpha", "beta", "gamma")


@pytest.fixture
def delivered(project: Repository, base: str, work_dir: Path) -> str:
    """The integration branch after three tasks were merged; its tip."""
    for name in TASKS:
        task = run_task(project, work_dir, name, base, {f"{name}.txt": f"{name}\n"})
        message = with_trailers(f"Merge task {name}", TaskTrailers(7, name, 1))
        merge_into(project, INTEGRATION, task.commit, create_at=base, message=message)
    tip = project.branch_tip(INTEGRATION)
    assert tip is not None
    return tip


def _fresh_clone(person: Person, project: Repository, tmp_path: Path, name: str) -> Path:
    clone = tmp_path / name
    person.git(tmp_path, "clone", "--quiet", "--branch", "main", str(project.path), str(clone))
    return clone


def test_bundle_verifies_and_brings_the_branch_to_a_clone_of_the_base(
    project: Repository, base: str, delivered: str, person: Person, tmp_path: Path
) -> None:
    result = bundle(project, base, INTEGRATION, tmp_path / "delivery.bundle")
    clone = _fresh_clone(person, project, tmp_path, "reviewer")
    person.git(clone, "bundle", "verify", str(result.path))
    person.git(clone, "fetch", "--quiet", str(result.path), f"refs/heads/{INTEGRATION}:delivered")

    assert (result.head, result.base) == (delivered, base)
    assert person.git(clone, "rev-parse", "delivered").strip() == delivered


def test_patches_apply_with_git_am_on_a_fresh_clone_of_the_base(
    project: Repository, base: str, delivered: str, person: Person, tmp_path: Path
) -> None:
    patches = format_patches(project, base, INTEGRATION, tmp_path / "patches")
    clone = _fresh_clone(person, project, tmp_path, "reviewer")
    person.git(clone, "am", "--quiet", *map(str, patches))

    assert len(patches) == 3
    assert all(patch.parent == tmp_path / "patches" for patch in patches)
    applied_tree = person.git(clone, "rev-parse", "HEAD^{tree}").strip()
    assert applied_tree == person.git(project.path, "rev-parse", f"{delivered}^{{tree}}").strip()


def test_commits_between_maps_each_task_to_its_commits(
    project: Repository, base: str, delivered: str
) -> None:
    commits = commits_between(project, base, INTEGRATION)
    by_task = commits_by_task(commits)

    subjects = {task: [info.subject for info in infos] for task, infos in by_task.items()}
    assert subjects == {
        "alpha": ["Task alpha"],  # the first merge was a fast-forward: no merge commit
        "beta": ["Task beta", "Merge task beta"],
        "gamma": ["Task gamma", "Merge task gamma"],
    }
    assert all(info.trailers["Swarmd-Ticket"] == "7" for info in commits)
    assert all(info.trailers["Swarmd-Attempt"] == "1" for info in commits)
    assert commits[-1].commit == delivered
    assert commits[0].parents == (base,)


def test_commits_no_trailer_names_are_under_none(
    project: Repository, base: str, person: Person
) -> None:
    (project.path / "person.txt").write_text("by hand\n")
    by_hand = person.commit_all(project.path, "by hand")

    grouped = commits_by_task(commits_between(project, base, "main"))

    assert [info.commit for info in grouped[None]] == [by_hand]


def test_an_empty_bundle_is_refused(project: Repository, base: str, tmp_path: Path) -> None:
    merge_into(project, INTEGRATION, base, create_at=base)

    with pytest.raises(GitError, match="holds no commits beyond"):
        bundle(project, base, INTEGRATION, tmp_path / "empty.bundle")
    assert not (tmp_path / "empty.bundle").exists()
