"""commit_task: the daemon's commit of a task, its trailers, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmd.errors import GitError
from swarmd.git import (
    CommitRefusedError,
    DenyRules,
    Repository,
    TaskBranchError,
    TaskTrailers,
    WorktreeError,
    task_branch,
    with_trailers,
)
from tests.support.repos import TICKET, Person, finish_task, run_task, start_task, write

SECRET = "sk-live-4f9a2c7e1b8d3f6a"


def test_commit_carries_the_fixed_identity_and_the_task_trailers(
    project: Repository, base: str, work_dir: Path, person: Person
) -> None:
    result = run_task(project, work_dir, "copy", base, {"index.md": "# Hi\n"}, attempt=2)

    assert result.created
    assert result.changed_paths == ("index.md",)

    def show(placeholder: str) -> str:
        return person.git(project.path, "log", "-1", f"--format={placeholder}", result.commit)

    assert (
        show("%an <%ae>|%cn <%ce>").strip() == "swarmd <swarmd@localhost>|swarmd <swarmd@localhost>"
    )
    assert show("%P").strip() == base
    message = show("%B")
    assert message.startswith("Task copy\n\n")
    assert f"Swarmd-Ticket: {TICKET}\nSwarmd-Task: copy\nSwarmd-Attempt: 2\n" in message


def test_commit_moves_the_task_branch_and_leaves_the_worktree_clean(
    project: Repository, base: str, work_dir: Path, person: Person
) -> None:
    result = run_task(project, work_dir, "copy", base, {"docs/a.md": "a\n"})

    assert project.branch_tip(task_branch("swarmd", TICKET, "copy")) == result.commit
    assert person.git(work_dir / str(TICKET) / "copy", "status", "--porcelain") == ""


def test_worktree_without_changes_makes_no_commit(
    project: Repository, base: str, work_dir: Path
) -> None:
    result = run_task(project, work_dir, "idle", base, {})

    assert not result.created
    assert result.commit == base
    assert result.changed_paths == ()


def test_agent_commits_on_its_own_branch_are_kept(
    project: Repository, base: str, work_dir: Path, person: Person
) -> None:
    worktree = start_task(project, work_dir, "eager", base)
    write(worktree / "one.txt", "1\n")
    agents_commit = person.commit_all(worktree, "agent: one")
    write(worktree / "two.txt", "2\n")

    result = finish_task(project, worktree, "eager", base)

    assert result.created
    assert person.git(project.path, "rev-parse", f"{result.commit}^").strip() == agents_commit
    assert set(result.changed_paths) == {"one.txt", "two.txt"}


def test_agent_commit_with_nothing_left_is_the_result(
    project: Repository, base: str, work_dir: Path, person: Person
) -> None:
    worktree = start_task(project, work_dir, "eager", base)
    write(worktree / "one.txt", "1\n")
    agents_commit = person.commit_all(worktree, "agent: one")

    result = finish_task(project, worktree, "eager", base)

    assert not result.created
    assert result.commit == agents_commit


def test_agent_that_reset_its_branch_to_an_unrelated_commit_is_refused(
    project: Repository, base: str, work_dir: Path, person: Person
) -> None:
    worktree = start_task(project, work_dir, "rogue", base)
    person.git(worktree, "checkout", "--quiet", "--orphan", "scratch")
    write(worktree / "other.txt", "unrelated\n")
    unrelated = person.commit_all(worktree, "unrelated root")
    branch = task_branch("swarmd", TICKET, "rogue")
    person.git(worktree, "checkout", "--quiet", branch)
    person.git(worktree, "reset", "--quiet", "--hard", unrelated)

    with pytest.raises(TaskBranchError, match=r"moved task branch .* off its start commit"):
        finish_task(project, worktree, "rogue", base)
    assert project.branch_tip(branch) == unrelated


def test_agent_that_switched_branches_is_refused(
    project: Repository, base: str, work_dir: Path, person: Person
) -> None:
    worktree = start_task(project, work_dir, "wanderer", base)
    person.git(worktree, "switch", "--quiet", "--create", "elsewhere")
    write(worktree / "x.txt", "x\n")

    with pytest.raises(TaskBranchError, match=r"left task branch .* for elsewhere"):
        finish_task(project, worktree, "wanderer", base)


def test_agent_that_detached_head_is_refused(
    project: Repository, base: str, work_dir: Path, person: Person
) -> None:
    worktree = start_task(project, work_dir, "detached", base)
    person.git(worktree, "switch", "--quiet", "--detach")

    with pytest.raises(TaskBranchError, match="a detached HEAD"):
        finish_task(project, worktree, "detached", base)


def test_env_file_and_file_holding_a_secret_are_never_committed(
    project: Repository, base: str, work_dir: Path, person: Person
) -> None:
    worktree = start_task(project, work_dir, "leaky", base)
    write(worktree / ".env", "OPENAI_API_KEY=whatever\n")
    write(worktree / "src" / "settings.py", f"KEY = {SECRET!r}\n")
    write(worktree / "src" / "ok.py", "print('fine')\n")
    rules = DenyRules(secrets=(SECRET,))

    with pytest.raises(CommitRefusedError) as caught:
        finish_task(project, worktree, "leaky", base, rules=rules)

    refused = {item.path: item.reason for item in caught.value.refused}
    assert refused == {
        ".env": "matches the deny pattern '.env'",
        "src/settings.py": "contains a known secret",
    }
    assert '".env"' in str(caught.value)
    assert '"src/settings.py"' in str(caught.value)
    assert SECRET not in str(caught.value)
    assert project.branch_tip(task_branch("swarmd", TICKET, "leaky")) == base
    assert person.git(worktree, "diff", "--cached", "--name-only") == ""
    assert (worktree / ".env").exists()


def test_deny_rules_cover_keys_variants_and_size_but_allow_the_example(
    project: Repository, base: str, work_dir: Path
) -> None:
    worktree = start_task(project, work_dir, "keys", base)
    for name in (".env.local", "certs/server.pem", "deploy.KEY", "id_ed25519", "id_rsa.pub"):
        write(worktree / name, "x\n")
    write(worktree / "big.bin", "x" * 2048)
    write(worktree / ".env.example", "OPENAI_API_KEY=\n")

    with pytest.raises(CommitRefusedError) as caught:
        finish_task(project, worktree, "keys", base, rules=DenyRules(max_file_bytes=1024))

    refused = {item.path: item.reason for item in caught.value.refused}
    assert set(refused) == {
        ".env.local",
        "certs/server.pem",
        "deploy.KEY",
        "id_ed25519",
        "id_rsa.pub",
        "big.bin",
    }
    assert refused["big.bin"] == "is 2048 bytes, over the limit of 1024"


def test_secret_the_agent_committed_itself_is_refused_too(
    project: Repository, base: str, work_dir: Path, person: Person
) -> None:
    worktree = start_task(project, work_dir, "sneaky", base)
    write(worktree / "notes.txt", f"token {SECRET}\n")
    person.commit_all(worktree, "agent: notes")

    with pytest.raises(CommitRefusedError, match=r"notes\.txt"):
        finish_task(project, worktree, "sneaky", base, rules=DenyRules(secrets=(SECRET,)))


def test_deleting_a_denied_file_is_allowed(
    project: Repository, base: str, work_dir: Path, person: Person
) -> None:
    write(project.path / "old.pem", "legacy\n")
    start = person.commit_all(project.path, "a key the project already had")
    worktree = start_task(project, work_dir, "cleanup", start)
    (worktree / "old.pem").unlink()

    result = finish_task(project, worktree, "cleanup", start)

    assert result.created
    assert result.changed_paths == ("old.pem",)


def test_a_worktree_that_is_gone_is_a_worktree_error(
    project: Repository, base: str, work_dir: Path
) -> None:
    with pytest.raises(WorktreeError, match="does not exist"):
        finish_task(project, work_dir / "never-made", "ghost", base)


def test_trailer_values_on_more_than_one_line_are_refused() -> None:
    with pytest.raises(GitError, match="cannot be a trailer value"):
        with_trailers("Task x", TaskTrailers(7, "two\nlines", 1))
