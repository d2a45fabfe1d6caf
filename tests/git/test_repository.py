"""Repository.open and the ref verbs: what counts as a repository, pinning, moving refs."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmd.errors import GitError, InputError
from swarmd.git import GitRunner, NotARepositoryError, Repository, task_branch
from swarmd.git.repository import branch_name_problem
from tests.support.repos import Person, write


def test_open_finds_the_common_dir_and_the_lock(project: Repository) -> None:
    assert project.common_dir == project.path / ".git"
    assert project.lock.path == project.path / ".git" / "swarmd.lock"
    assert not project.bare


def test_a_plain_directory_is_not_a_repository(tmp_path: Path, runner: GitRunner) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()

    with pytest.raises(NotARepositoryError, match="is not a git repository") as caught:
        Repository.open(plain, runner=runner)
    assert isinstance(caught.value, InputError)
    assert caught.value.exit_code == 2


def test_a_missing_path_is_not_a_repository(tmp_path: Path, runner: GitRunner) -> None:
    with pytest.raises(NotARepositoryError, match="is not a directory"):
        Repository.open(tmp_path / "missing", runner=runner)


def test_a_directory_inside_a_repository_is_not_its_top_level(
    project: Repository, runner: GitRunner
) -> None:
    inner = project.path / "src"
    inner.mkdir()

    with pytest.raises(NotARepositoryError, match="is not the top level"):
        Repository.open(inner, runner=runner)
    with pytest.raises(NotARepositoryError, match=r"inside a \.git directory"):
        Repository.open(project.common_dir, runner=runner)


def test_a_bare_repository_is_allowed_only_when_asked(
    tmp_path: Path, person: Person, runner: GitRunner
) -> None:
    remote = tmp_path / "remote.git"
    person.git(tmp_path, "init", "--quiet", "--bare", str(remote))

    with pytest.raises(NotARepositoryError, match="is a bare repository"):
        Repository.open(remote, runner=runner)
    opened = Repository.open(remote, runner=runner, allow_bare=True)
    assert opened.bare
    assert opened.common_dir == remote


def test_resolve_commit_pins_a_ref_to_its_full_id(
    project: Repository, person: Person, base: str
) -> None:
    write(project.path / "later.txt", "later\n")
    later = person.commit_all(project.path, "later")

    assert len(base) == 40
    assert project.resolve_commit("main") == later
    assert project.resolve_commit("main~1") == base
    with pytest.raises(GitError, match="does not name a commit"):
        project.resolve_commit("no-such-ref")
    with pytest.raises(GitError, match="is not a ref"):
        project.resolve_commit("--all")


def test_update_branch_moves_only_from_the_expected_commit(
    project: Repository, person: Person, base: str
) -> None:
    write(project.path / "later.txt", "later\n")
    later = person.commit_all(project.path, "later")

    created = project.update_branch("swarmd/7/x", base, None, message="create")
    again = project.update_branch("swarmd/7/x", later, None, message="create again")
    stale = project.update_branch("swarmd/7/x", later, later, message="from the wrong tip")
    moved = project.update_branch("swarmd/7/x", later, base, message="move")

    assert (created, again, stale, moved) == (True, False, False, True)
    assert project.branch_tip("swarmd/7/x") == later


def test_delete_branch_only_at_the_expected_commit(
    project: Repository, person: Person, base: str
) -> None:
    project.update_branch("swarmd/7/x", base, None, message="create")
    write(project.path / "later.txt", "later\n")
    later = person.commit_all(project.path, "later")

    assert not project.delete_branch("swarmd/7/x", later)
    assert project.delete_branch("swarmd/7/x", base)
    assert project.branch_tip("swarmd/7/x") is None


@pytest.mark.parametrize(
    "name", ["", "-rf", "a..b", "a b", "a~1", "a:b", "a/", "a.lock", "a/.hidden", "a@{1}", "a//b"]
)
def test_branch_names_git_would_refuse_are_refused(name: str) -> None:
    assert branch_name_problem(name) is not None


def test_task_branch_is_prefix_ticket_task() -> None:
    assert task_branch("swarmd", 42, "html") == "swarmd/42/html"
    with pytest.raises(GitError, match="not a valid branch name"):
        task_branch("swarmd", 42, "two words")


def test_gc_runs_and_gives_the_lock_back(project: Repository) -> None:
    project.gc()

    with project.lock.held(timeout=0):
        pass
