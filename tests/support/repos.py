"""Real repositories for the git tests: a person's checkout, their own git, and its state.

The person runs git with an isolated ``HOME`` (never the real user's config) and an identity
of their own, so every commit swarmd makes can be told apart from theirs.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from swarmd.git import (
    DenyRules,
    Repository,
    TaskCommit,
    TaskTrailers,
    add_worktree,
    commit_task,
    task_branch,
)

TICKET = 7


class Person:
    """Someone at a terminal, with their own git configuration in ``home``."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Pat Person",
            "GIT_AUTHOR_EMAIL": "pat@example.org",
            "GIT_COMMITTER_NAME": "Pat Person",
            "GIT_COMMITTER_EMAIL": "pat@example.org",
        }

    def git(self, cwd: Path, *args: str, check: bool = True) -> str:
        """Run git as the person would; its stdout."""
        result = subprocess.run(
            ["git", "-C", str(cwd), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def commit_all(self, cwd: Path, message: str) -> str:
        """Stage and commit everything in ``cwd``; the new HEAD."""
        self.git(cwd, "add", "--all")
        self.git(cwd, "commit", "--quiet", "--message", message)
        return self.git(cwd, "rev-parse", "HEAD").strip()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@dataclass(frozen=True)
class CheckoutState:
    """Everything of a checkout that swarmd must never change."""

    head: str
    head_ref: str
    index_digest: str
    staged: str
    status: str
    files_digest: str


def checkout_state(person: Person, path: Path) -> CheckoutState:
    """The state of the person's checkout, read without rewriting its index."""
    index_digest = hashlib.sha256((path / ".git" / "index").read_bytes()).hexdigest()
    files = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if ".git" not in p.relative_to(path).parts):
        files.update(str(file.relative_to(path)).encode() + b"\0")
        if file.is_file():
            files.update(file.read_bytes())
    person.env["GIT_OPTIONAL_LOCKS"] = "0"
    try:
        return CheckoutState(
            head=person.git(path, "rev-parse", "HEAD"),
            head_ref=person.git(path, "symbolic-ref", "HEAD"),
            index_digest=index_digest,
            staged=person.git(path, "diff", "--cached"),
            status=person.git(path, "status", "--porcelain", "--untracked-files=all"),
            files_digest=files.hexdigest(),
        )
    finally:
        del person.env["GIT_OPTIONAL_LOCKS"]


def start_task(
    repo: Repository, work_dir: Path, task: str, start: str, ticket: int = TICKET
) -> Path:
    """A task's worktree on its own branch at ``start``; its path."""
    path = work_dir / str(ticket) / task
    add_worktree(repo, task_branch("swarmd", ticket, task), start, path)
    return path


def finish_task(
    repo: Repository,
    worktree: Path,
    task: str,
    start: str,
    *,
    ticket: int = TICKET,
    attempt: int = 1,
    rules: DenyRules | None = None,
) -> TaskCommit:
    """Commit what the agent left in ``worktree``, as the daemon does."""
    return commit_task(
        repo,
        worktree,
        branch=task_branch("swarmd", ticket, task),
        start_commit=start,
        message=f"Task {task}",
        trailers=TaskTrailers(ticket, task, attempt),
        rules=rules,
    )


def run_task(
    repo: Repository, work_dir: Path, task: str, start: str, files: dict[str, str], **kwargs: int
) -> TaskCommit:
    """A whole task: worktree, the agent's files, the daemon's commit."""
    worktree = start_task(repo, work_dir, task, start, ticket=kwargs.get("ticket", TICKET))
    for name, text in files.items():
        write(worktree / name, text)
    return finish_task(repo, worktree, task, start, **kwargs)
