"""Tickets that work on a repository, end to end: real git, real daemons, real agents.

A person's checkout with a commit on ``main`` is registered in ``repos.toml``; tickets name
it. Each test runs the real ``swarmd`` command and reads the results back with git, as the
person would find them, and checks that their checkout was never touched.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tarfile
from pathlib import Path
from typing import Any

import pytest

from swarmd.models import ExitReason, TaskState, TicketState
from tests.support.cli import (
    Daemon,
    attempts_of,
    swarmd,
    tasks_of,
    ticket_of,
    wait_until,
    write_ticket,
)
from tests.support.fake_forge import TOKEN as FORGE_TOKEN
from tests.support.fake_forge import ForgeServer
from tests.support.repos import Person, checkout_state, write

SECRET = "sk-test-secret-0123456789abcdef"


@pytest.fixture
def person(tmp_path: Path) -> Person:
    home = tmp_path / "person"
    home.mkdir()
    return Person(home)


@pytest.fixture
def project(tmp_path: Path, person: Person) -> Path:
    path = tmp_path / "project"
    person.git(tmp_path, "init", "--quiet", "--initial-branch=main", str(path))
    write(path / "README.md", "# Project\nline two\n")
    write(path / "app.py", "print('hello')\n")
    write(path / ".gitignore", ".env.example\n")
    write(path / ".env.example", "EXAMPLE=1\n")
    person.commit_all(path, "Initial commit")
    return path


@pytest.fixture
def env(swarmd_env: dict[str, str], tmp_path: Path, project: Path) -> dict[str, str]:
    registry = tmp_path / "repos.toml"
    registry.write_text(
        f'[repos.app]\npath = "{project}"\nbase = "main"\ncopy_ignored = [".env.example"]\n'
    )
    return {**swarmd_env, "SWARMD_REPOS_FILE": str(registry), "OPENAI_API_KEY": SECRET}


def shell(script: str) -> dict[str, Any]:
    return {"agent": "command", "command": ["sh", "-c", script]}


def run(tmp_path: Path, env: dict[str, str], ticket: dict[str, Any]) -> Any:
    return swarmd("run-ticket", str(write_ticket(tmp_path, ticket)), "--wait", env=env, timeout=180)


def branch_files(person: Person, project: Path, branch: str) -> set[str]:
    return set(person.git(project, "ls-tree", "-r", "--name-only", branch).split())


def task_trailers(person: Person, project: Path, rev_range: str) -> list[str]:
    log = person.git(project, "log", "--format=%(trailers:key=Swarmd-Task,valueonly)", rev_range)
    return sorted(line.strip() for line in log.splitlines() if line.strip())


def swarmd_branches(person: Person, project: Path) -> list[str]:
    listing = person.git(project, "for-each-ref", "--format=%(refname:short)", "refs/heads/")
    return sorted(b for b in listing.split() if b.startswith("swarmd/"))


def test_a_fan_out_and_fan_in_ends_as_one_branch_holding_every_tasks_commit(
    tmp_path: Path, env: dict[str, str], home: Path, person: Person, project: Path
) -> None:
    before = checkout_state(person, project)
    ticket = {
        "title": "fan",
        "repo": "app",
        "tasks": [
            {"name": "a", **shell("echo a > a.txt")},
            {"name": "b", **shell("echo b > b.txt")},
            {"name": "c", **shell("echo c > c.txt; test -f .env.example")},
            {
                "name": "join",
                "needs": ["a", "b", "c"],
                **shell("test -f a.txt && test -f b.txt && test -f c.txt && echo ok > join.txt"),
            },
        ],
    }

    result = run(tmp_path, env, ticket)

    assert result.returncode == 0, result.stdout + result.stderr
    assert checkout_state(person, project) == before  # HEAD, index, files: untouched
    files = branch_files(person, project, "swarmd/1")
    assert {"a.txt", "b.txt", "c.txt", "join.txt"} <= files
    assert ".env.example" not in files  # copied into worktrees, ignored, never committed
    assert task_trailers(person, project, "main..swarmd/1") == ["a", "b", "c", "join"]
    assert swarmd_branches(person, project) == ["swarmd/1"]  # task branches cleaned up
    worktrees = person.git(project, "worktree", "list", "--porcelain")
    assert worktrees.count("worktree ") == 1
    delivery = home / "outputs" / "1" / "delivery.tar.gz"
    assert swarmd("verify-archive", str(delivery), env=env).returncode == 0
    with tarfile.open(delivery) as archive:
        names = archive.getnames()
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert "files/repository/branch.bundle" in names
    assert any(n.startswith("files/repository/patches/") for n in names)
    repository = manifest["ticket"]["repository"]
    assert repository["branch"] == "swarmd/1"
    assert set(repository["tasks"]) >= {"a", "b", "c", "join"}
    bundle = tmp_path / "branch.bundle"
    with tarfile.open(delivery) as archive:
        bundle.write_bytes(archive.extractfile("files/repository/branch.bundle").read())  # type: ignore[union-attr]
    person.git(project, "bundle", "verify", str(bundle))


def test_a_planted_env_file_and_a_key_in_a_file_are_never_committed(
    tmp_path: Path, env: dict[str, str], person: Person, project: Path
) -> None:
    ticket = {
        "title": "secrets",
        "repo": "app",
        "tasks": [
            {"name": "envfile", **shell("echo TOKEN=x > .env; echo fine > ok.txt")},
            {"name": "keyfile", **shell(f"echo 'key = \"{SECRET}\"' > settings.py")},
        ],
    }

    result = run(tmp_path, env, ticket)

    assert result.returncode == 1
    tasks = {t.name: t for t in tasks_of(Path(env["SWARMD_HOME"]), 1)}
    assert tasks["envfile"].state is TaskState.DEAD
    assert ".env" in (tasks["envfile"].last_error or "")
    assert tasks["keyfile"].state is TaskState.DEAD
    assert "settings.py" in (tasks["keyfile"].last_error or "")
    assert SECRET not in (tasks["keyfile"].last_error or "")
    committed = person.git(project, "log", "--all", "--name-only", "--format=")
    assert ".env" not in committed.split() and "settings.py" not in committed.split()


def test_a_conflict_fails_the_second_task_naming_the_file_and_keeps_its_worktree(
    tmp_path: Path, env: dict[str, str], home: Path, person: Person, project: Path
) -> None:
    ticket = {
        "title": "conflict",
        "repo": "app",
        "tasks": [
            {"name": "first", **shell("printf '# Project\\nfirst\\n' > README.md")},
            {
                "name": "second",
                "needs": [],
                **shell("sleep 0.5; printf '# Project\\nsecond\\n' > README.md"),
            },
        ],
    }
    result = run(tmp_path, {**env, "SWARMD_MAX_CONCURRENT_WORKERS": "1"}, ticket)

    assert result.returncode == 1
    tasks = {t.name: t for t in tasks_of(home, 1)}
    failed = [t for t in tasks.values() if t.state is TaskState.DEAD]
    assert len(failed) == 1
    [attempt] = attempts_of(home, failed[0].id)
    assert attempt.exit_reason is ExitReason.CONFLICT
    assert "README.md" in (attempt.error or "")
    kept = home / "worktrees" / "1" / failed[0].name
    assert kept.is_dir()
    assert "locked" in person.git(project, "worktree", "list", "--porcelain")
    succeeded = next(t for t in tasks.values() if t.state is TaskState.SUCCEEDED)
    readme = person.git(project, "show", "swarmd/1:README.md")
    assert succeeded.name in readme
    shown = swarmd("show", "1", env={**env, "COLUMNS": "200"})
    assert f"worktree of {failed[0].name}: {kept}" in shown.stdout
    assert "conflicts" in shown.stdout
    assert "branch: swarmd/1 from main" in shown.stdout


def test_an_agent_that_commits_itself_and_one_that_only_edits_both_end_on_the_branch(
    tmp_path: Path, env: dict[str, str], person: Person, project: Path
) -> None:
    commit = (
        "echo mine > mine.txt && git add mine.txt && "
        "git -c user.name=agent -c user.email=agent@example.org commit -q -m 'agent commit'"
    )
    ticket = {
        "title": "commits",
        "repo": "app",
        "tasks": [
            {"name": "committer", **shell(commit)},
            {"name": "editor", **shell("echo e > e.txt")},
        ],
    }

    result = run(tmp_path, env, ticket)

    assert result.returncode == 0, result.stdout + result.stderr
    assert {"mine.txt", "e.txt"} <= branch_files(person, project, "swarmd/1")
    assert "stdout.txt" not in branch_files(person, project, "swarmd/1")
    subjects = person.git(project, "log", "--format=%s", "main..swarmd/1")
    assert "agent commit" in subjects


def test_an_agent_that_moves_its_branch_off_the_base_is_refused(
    tmp_path: Path, env: dict[str, str], home: Path, person: Person, project: Path
) -> None:
    orphan = (
        "git checkout -q --orphan elsewhere && echo x > x.txt && git add x.txt && "
        "git -c user.name=a -c user.email=a@example.org commit -q -m orphan"
    )
    result = run(
        tmp_path, env, {"title": "t", "repo": "app", "tasks": [{"name": "o", **shell(orphan)}]}
    )

    assert result.returncode == 1
    [task] = tasks_of(home, 1)
    assert task.state is TaskState.DEAD
    assert "swarmd/tasks/1/o" in (task.last_error or "")
    assert "x.txt" not in branch_files(person, project, "main")


def test_a_llm_task_writes_its_file_blocks_into_the_worktree_and_they_are_committed(
    tmp_path: Path, env: dict[str, str], person: Person, project: Path, fake_llm: Any
) -> None:
    from tests.support.fake_llm import Fault
    from tests.support.llm_env import provider_env

    fake_llm.script("page", Fault.ok('<file path="docs/page.md">\n# Page\n</file>\n'))
    llm = {**env, **provider_env(fake_llm)}
    ticket = {
        "title": "llm",
        "repo": "app",
        "agent": "llm",
        "tasks": [{"name": "page", "prompt": "page", "model": ["openai/page"]}],
    }

    result = run(tmp_path, llm, ticket)

    assert result.returncode == 0, result.stdout + result.stderr
    assert person.git(project, "show", "swarmd/1:docs/page.md").strip() == "# Page"
    # The whole reply is swarmd's record of the attempt: kept, never committed.
    assert "response.md" not in branch_files(person, project, "swarmd/1")
    with tarfile.open(Path(env["SWARMD_HOME"]) / "outputs" / "1" / "page.tar.gz") as archive:
        assert {"files/response.md", "files/page.patch"} <= set(archive.getnames())


def test_deliver_push_sends_the_branch_to_the_remote(
    tmp_path: Path, env: dict[str, str], person: Person, project: Path
) -> None:
    remote = tmp_path / "remote.git"
    person.git(tmp_path, "init", "--quiet", "--bare", str(remote))
    person.git(project, "remote", "add", "origin", str(remote))
    ticket = {
        "title": "push",
        "repo": "app",
        "deliver": "push",
        "tasks": [{"name": "p", **shell("echo p > p.txt")}],
    }

    result = run(tmp_path, env, ticket)

    assert result.returncode == 0, result.stdout + result.stderr
    pushed = person.git(remote, "rev-parse", "swarmd/1").strip()
    assert pushed == person.git(project, "rev-parse", "swarmd/1").strip()


def test_a_base_that_does_not_exist_is_refused_at_submit_with_nothing_written(
    tmp_path: Path, env: dict[str, str], home: Path
) -> None:
    ticket = {
        "title": "t",
        "repo": "app",
        "base": "no-such-branch",
        "tasks": [{"name": "a", **shell("true")}],
    }
    result = swarmd("submit", str(write_ticket(tmp_path, ticket)), env=env)
    assert result.returncode == 2
    assert "no-such-branch" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (home / "swarmd.db").exists() or not tasks_of(home, 1)


def test_the_base_is_pinned_at_submit_even_if_main_moves_before_the_task_runs(
    tmp_path: Path, env: dict[str, str], home: Path, person: Person, project: Path
) -> None:
    pinned = person.git(project, "rev-parse", "main").strip()
    ticket = {"title": "pin", "repo": "app", "tasks": [{"name": "a", **shell("echo a > a.txt")}]}
    assert swarmd("submit", str(write_ticket(tmp_path, ticket)), env=env).returncode == 0
    write(project / "later.txt", "moved on\n")
    person.commit_all(project, "main moves on")

    result = swarmd("run-ticket", "1", "--wait", env=env, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "later.txt" not in branch_files(person, project, "swarmd/1")
    parent = person.git(project, "rev-parse", "swarmd/1~1").strip()
    assert parent == pinned


def test_a_daemon_killed_between_a_commit_and_its_merge_completes_the_merge_on_restart(
    tmp_path: Path, env: dict[str, str], home: Path, person: Person, project: Path
) -> None:
    # The daemon's state at the kill: the attempt still open, its commit recorded, unmerged.
    gate = tmp_path / "gate"
    ticket = {
        "title": "k",
        "repo": "app",
        "tasks": [
            {"name": "w", **shell(f"echo w > w.txt; while [ ! -e {gate} ]; do sleep 0.05; done")}
        ],
    }
    assert swarmd("submit", str(write_ticket(tmp_path, ticket)), env=env).returncode == 0
    daemon = Daemon(env, home).start()
    worktree = home / "worktrees" / "1" / "w"
    try:
        wait_until((worktree / "w.txt").exists)
        commit = _commit_by_hand(person, worktree)
        _record_commit_as_the_daemon_would(home, commit)
        daemon.signal(9)
        daemon.wait()
    finally:
        daemon.stop()

    restarted = Daemon(env, home).start()
    try:
        wait_until(lambda: ticket_of(home, 1).state.is_terminal, timeout=60)
    finally:
        restarted.stop()

    assert ticket_of(home, 1).state is TicketState.SUCCEEDED
    [task] = tasks_of(home, 1)
    assert [a.exit_reason for a in attempts_of(home, task.id)] == [ExitReason.OK]
    assert person.git(project, "rev-parse", "swarmd/1").strip() == commit


def _commit_by_hand(person: Person, worktree: Path) -> str:
    """What the daemon's commit leaves: the task branch at a commit of the worktree's files."""
    person.git(worktree, "add", "--all")
    person.git(worktree, "commit", "--quiet", "--message", "w: work")
    return person.git(worktree, "rev-parse", "HEAD").strip()


def _record_commit_as_the_daemon_would(home: Path, commit: str) -> None:
    with sqlite3.connect(home / "swarmd.db", isolation_level=None) as db:
        attempt_id, task_id = db.execute(
            "SELECT id, task_id FROM attempts WHERE ended_at IS NULL"
        ).fetchone()
        db.execute(
            "INSERT INTO task_commits (task_id, attempt_id, commit_id) VALUES (?, ?, ?)",
            (task_id, attempt_id, commit),
        )


@pytest.mark.slow
@pytest.mark.parametrize("rounds", [2])
def test_32_tasks_on_one_repository_at_concurrency_10_lose_no_commit_and_leave_nothing(
    rounds: int, tmp_path: Path, env: dict[str, str], person: Person, project: Path
) -> None:
    busy = {**env, "SWARMD_MAX_CONCURRENT_WORKERS": "10"}
    before = checkout_state(person, project)
    for ticket_id in range(1, rounds + 1):
        tasks = [{"name": f"t{i:02d}", **shell(f"echo {i} > f{i:02d}.txt")} for i in range(32)]
        result = run(tmp_path, busy, {"title": f"round {ticket_id}", "repo": "app", "tasks": tasks})

        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        branch = f"swarmd/{ticket_id}"
        assert len(task_trailers(person, project, f"main..{branch}")) == 32
        assert {f"f{i:02d}.txt" for i in range(32)} <= branch_files(person, project, branch)
    assert swarmd_branches(person, project) == [f"swarmd/{i}" for i in range(1, rounds + 1)]
    assert person.git(project, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert checkout_state(person, project) == before


def test_deliver_pr_pushes_and_opens_a_draft_pull_request_whose_url_the_delivery_names(
    tmp_path: Path,
    env: dict[str, str],
    home: Path,
    person: Person,
    project: Path,
    forge_server: ForgeServer,
) -> None:
    remote = tmp_path / "remote.git"
    person.git(tmp_path, "init", "--quiet", "--bare", str(remote))
    person.git(project, "remote", "add", "origin", str(remote))
    registry = Path(env["SWARMD_REPOS_FILE"])
    registry.write_text(
        registry.read_text()
        + f'deliver = "pr"\n[repos.app.forge]\nkind = "github"\nrepository = "octo/app"\n'
        f'api_url = "{forge_server.url}"\ntoken_env = "FORGE_TOKEN"\n'
    )
    forge_env = {**env, "FORGE_TOKEN": FORGE_TOKEN}
    ticket = {
        "title": "Landing page",
        "repo": "app",
        "tasks": [{"name": "p", **shell("echo p > p.txt")}],
    }

    result = run(tmp_path, forge_env, ticket)

    assert result.returncode == 0, result.stdout + result.stderr
    [request] = forge_server.requests
    assert request.body["head"] == "swarmd/1"
    assert request.body["base"] == "main"
    assert request.body["draft"] is True
    assert "Landing page" in request.body["title"]
    assert person.git(remote, "rev-parse", "swarmd/1").strip()
    with tarfile.open(home / "outputs" / "1" / "delivery.tar.gz") as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest["ticket"]["repository"]["pull_request"].startswith("https://forge.example/")
    shown = json.loads(swarmd("show", "1", "--json", env=forge_env).stdout)
    assert shown["repository"]["pull_request"].startswith("https://forge.example/")
    assert shown["repository"]["worktrees"] == []  # merged and clean: removed
    # The forge's token is the daemon's: a task's command never sees it.
    assert FORGE_TOKEN not in (home / "logs" / "swarmd.jsonl").read_text()


def test_at_start_up_a_worktree_whose_folder_is_gone_is_pruned_and_its_branch_kept(
    tmp_path: Path, env: dict[str, str], home: Path, person: Person, project: Path
) -> None:
    gate = tmp_path / "gate"
    waits = f"echo w > w.txt; while [ ! -e {gate} ]; do sleep 0.05; done"
    ticket = {"title": "g", "repo": "app", "tasks": [{"name": "w", **shell(waits)}]}
    assert swarmd("submit", str(write_ticket(tmp_path, ticket)), env=env).returncode == 0
    worktree = home / "worktrees" / "1" / "w"
    daemon = Daemon(env, home).start()
    try:
        wait_until((worktree / "w.txt").exists)
        daemon.signal(9)
        daemon.wait()
    finally:
        daemon.stop()
    shutil.rmtree(worktree)  # a person cleaned up by hand, or a disk was restored
    gate.touch()

    restarted = Daemon(env, home).start()
    try:
        wait_until(lambda: ticket_of(home, 1).state.is_terminal, timeout=60)
    finally:
        restarted.stop()

    assert ticket_of(home, 1).state is TicketState.SUCCEEDED
    assert "w.txt" in branch_files(person, project, "swarmd/1")
    assert person.git(project, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_verify_checks_git_clean_and_tests_pass_run_in_the_tickets_merged_tree(
    tmp_path: Path, env: dict[str, str], home: Path, person: Person, project: Path
) -> None:
    ticket = {
        "title": "verified",
        "repo": "app",
        "tasks": [
            {"name": "a", **shell("echo a > a.txt")},
            {"name": "b", **shell("echo b > b.txt")},
            {
                "name": "check",
                "agent": "verify",
                "needs": ["a", "b"],
                "checks": [
                    {"type": "git_clean"},
                    {
                        "type": "tests_pass",
                        "command": ["sh", "-c", "test -f a.txt && test -f b.txt"],
                    },
                ],
            },
        ],
    }

    result = run(tmp_path, env, ticket)

    assert result.returncode == 0, result.stdout + result.stderr
    report = (home / "work" / "1" / "check" / "verify-report.txt").read_text()
    assert "ok   git_clean" in report and "ok   tests_pass" in report
    assert "verify-report.txt" not in branch_files(person, project, "swarmd/1")
