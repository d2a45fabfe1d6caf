"""Push and fetch through the remote's own configuration, never a URL swarmd builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmd.errors import GitError
from swarmd.git import GitCommandError, Repository, fetch, merge_into, push
from tests.support.repos import Person, run_task, write

INTEGRATION = "swarmd/7/integration"


@pytest.fixture
def remote(tmp_path: Path, person: Person, project: Repository) -> Path:
    """A bare repository the project pushes to, as ``origin``."""
    path = tmp_path / "remote.git"
    person.git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(path))
    person.git(project.path, "remote", "add", "origin", str(path))
    person.git(project.path, "push", "--quiet", "origin", "main")
    return path


@pytest.fixture
def integrated(project: Repository, base: str, work_dir: Path) -> str:
    task = run_task(project, work_dir, "copy", base, {"copy.md": "copy\n"})
    return merge_into(project, INTEGRATION, task.commit, create_at=base).commit


def test_push_sends_the_branch_to_the_remote(
    project: Repository, remote: Path, integrated: str, person: Person
) -> None:
    result = push(project, "origin", INTEGRATION)

    assert result.commit == integrated
    assert person.git(remote, "rev-parse", f"refs/heads/{INTEGRATION}").strip() == integrated


def test_push_goes_through_the_persons_own_git_config(
    project: Repository, remote: Path, integrated: str, person: Person
) -> None:
    # The remote's address only resolves through the person's insteadOf rule, as it would
    # for a credential helper configured in their ~/.gitconfig.
    person.git(project.path, "remote", "set-url", "origin", "https://forge.invalid/team/app.git")
    write(
        person.home / ".gitconfig",
        f'[url "{remote}"]\n\tinsteadOf = https://forge.invalid/team/app.git\n',
    )

    push(project, "origin", INTEGRATION, remote_branch="feature/copy")

    assert person.git(remote, "rev-parse", "refs/heads/feature/copy").strip() == integrated


def test_push_refuses_anything_but_a_configured_remote_name(
    project: Repository, remote: Path, integrated: str
) -> None:
    with pytest.raises(GitError, match="is not a configured remote"):
        push(project, "https://user:token@forge.invalid/app.git", INTEGRATION)
    with pytest.raises(GitError, match="is not a configured remote"):
        push(project, str(remote), INTEGRATION)


def test_push_is_never_forced(
    project: Repository, remote: Path, integrated: str, person: Person, tmp_path: Path
) -> None:
    push(project, "origin", INTEGRATION)
    elsewhere = tmp_path / "elsewhere"
    person.git(tmp_path, "clone", "--quiet", "--branch", INTEGRATION, str(remote), str(elsewhere))
    write(elsewhere / "theirs.txt", "theirs\n")
    theirs = person.commit_all(elsewhere, "someone else's commit")
    person.git(elsewhere, "push", "--quiet", "origin", INTEGRATION)
    person.git(project.path, "update-ref", f"refs/heads/{INTEGRATION}", integrated + "~1")

    with pytest.raises(GitCommandError, match="rejected"):
        push(project, "origin", INTEGRATION)
    assert person.git(remote, "rev-parse", f"refs/heads/{INTEGRATION}").strip() == theirs


def test_fetch_updates_the_remote_tracking_refs(
    project: Repository, remote: Path, person: Person, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    person.git(tmp_path, "clone", "--quiet", str(remote), str(elsewhere))
    write(elsewhere / "news.txt", "news\n")
    news = person.commit_all(elsewhere, "news")
    person.git(elsewhere, "push", "--quiet", "origin", "main")

    fetch(project, "origin")

    assert project.resolve_commit("refs/remotes/origin/main") == news
