"""The home (``SWARMD_HOME``): every path under it, the daemon's lock on it, and its liveness.

    swarmd.db                                the queue (SQLite, WAL)
    swarmd.lock                              one daemon per home (``HomeLock``)
    doorbell.sock                            rung after a command writes (``swarmd.doorbell``)
    agents.toml                              named agents, unless ``SWARMD_AGENTS_FILE``
    repos.toml                               registered repositories, unless ``SWARMD_REPOS_FILE``
    logs/swarmd.jsonl                        the structured log
    logs/forkserver.log                      the fork server's own output
    logs/attempts/<ticket>/<task>.<n>.log    each attempt's stdout and stderr
    work/<ticket>/<task>/                    a task's workspace (its worker's cwd)
    worktrees/<ticket>/<task>/               a repository task's git worktree (its cwd)
    outputs/<ticket>/<task>.tar.gz           a task's archive
    outputs/<ticket>/delivery.tar.gz         the ticket's delivery

Every other module asks ``HomeLayout`` for a path; none joins a name under the home itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from swarmd.errors import DaemonRunningError

HEARTBEAT_STALE_SECONDS = 15.0
"""A daemon whose last heartbeat is older than this is stuck (its loop beats every 2 s)."""


@dataclass(frozen=True, slots=True)
class HomeLayout:
    root: Path

    @property
    def database(self) -> Path:
        return self.root / "swarmd.db"

    @property
    def lock(self) -> Path:
        return self.root / "swarmd.lock"

    @property
    def doorbell(self) -> Path:
        return self.root / "doorbell.sock"

    @property
    def agents(self) -> Path:
        return self.root / "agents.toml"

    @property
    def repos(self) -> Path:
        return self.root / "repos.toml"

    @property
    def log(self) -> Path:
        return self.root / "logs" / "swarmd.jsonl"

    @property
    def forkserver_log(self) -> Path:
        return self.root / "logs" / "forkserver.log"

    def attempt_log(self, ticket_id: int, task: str, attempt: int) -> Path:
        return self.root / "logs" / "attempts" / str(ticket_id) / f"{task}.{attempt}.log"

    def workspace(self, ticket_id: int, task: str) -> Path:
        return self.root / "work" / str(ticket_id) / task

    def worktree(self, ticket_id: int, task: str) -> Path:
        """A repository ticket's task works here: a git worktree, outside the repository."""
        return self.root / "worktrees" / str(ticket_id) / task

    def task_archive(self, ticket_id: int, task: str) -> Path:
        return self.root / "outputs" / str(ticket_id) / f"{task}.tar.gz"

    def delivery_archive(self, ticket_id: int) -> Path:
        return self.root / "outputs" / str(ticket_id) / "delivery.tar.gz"

    # -- one ticket's folders, for retention (``swarmd prune``) ---------------------------

    def ticket_workspaces(self, ticket_id: int) -> Path:
        """The folder of every workspace of one ticket."""
        return self.root / "work" / str(ticket_id)

    def ticket_attempt_logs(self, ticket_id: int) -> Path:
        """The folder of every attempt log of one ticket."""
        return self.root / "logs" / "attempts" / str(ticket_id)

    def ticket_outputs(self, ticket_id: int) -> Path:
        """The folder of one ticket's task archives and its delivery."""
        return self.root / "outputs" / str(ticket_id)

    def ticket_worktrees(self, ticket_id: int) -> Path:
        """The folder of one repository ticket's worktrees: retention never removes it."""
        return self.root / "worktrees" / str(ticket_id)

    def existing_outputs(self, ticket_id: int, tasks: Iterable[str]) -> dict[str, Path]:
        """The ticket's delivery and its tasks' archives, those that exist, by label."""
        found = {"delivery": self.delivery_archive(ticket_id)}
        found.update({f"task {task}": self.task_archive(ticket_id, task) for task in tasks})
        return {label: path for label, path in found.items() if path.exists()}

    def highest_ticket_id_on_disk(self) -> int:
        """The highest ticket id that names a folder of workspaces, outputs or attempt logs."""
        highest = 0
        for folder in (self.root / "work", self.root / "outputs", self.root / "logs" / "attempts"):
            try:
                names = [entry.name for entry in os.scandir(folder) if entry.is_dir()]
            except OSError:
                continue
            highest = max([highest, *(int(name) for name in names if name.isdigit())])
        return highest


class HomeLock:
    """An exclusive ``flock`` on ``swarmd.lock``: released by the kernel if we die."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = read_lock_pid(self.path)
            who = f" (pid {pid})" if pid else ""
            raise DaemonRunningError(
                f"another swarmd daemon{who} is already running on {self.path.parent}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def read_lock_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def running_daemon_pid(layout: HomeLayout) -> int | None:
    """The pid of the daemon holding this home's lock (-1 if unreadable), or None if none."""
    path = layout.lock
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_lock_pid(path) or -1
    finally:
        os.close(fd)
    return None


def heartbeat_is_stale(age_seconds: float) -> bool:
    return age_seconds > HEARTBEAT_STALE_SECONDS
