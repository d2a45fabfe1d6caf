"""Liveness: a stale daemon heartbeat makes ``status`` fail; a silent worker is killed as hung."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from swarmd.home import HEARTBEAT_STALE_SECONDS
from swarmd.models import ExitReason, TaskState, TicketState
from swarmd.store import Store
from tests.support.cli import (
    Daemon,
    attempts_of,
    python_command,
    swarmd,
    tasks_of,
    ticket_of,
    wait_until,
    write_ticket,
)

# Holds the home's lock as a daemon would, and says so once it does; exits when stdin closes.
HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, f"{os.getpid()}\\n".encode())
print("locked", flush=True)
sys.stdin.read()
"""

# Freezes its own worker: the worker is alive but can no longer heartbeat.
FREEZE_THE_WORKER = """
import os, signal, time
os.kill(os.getppid(), signal.SIGSTOP)
time.sleep(60)
"""


@pytest.fixture
def lock_holder(home: Path) -> Iterator[subprocess.Popen[str]]:
    holder = subprocess.Popen(
        [*python_command(HOLD_LOCK), str(home / "swarmd.lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    yield holder
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=30)
    holder.stdout.close()


def write_old_heartbeat(home: Path, pid: int, age: float) -> None:
    beat_at = time.time() - age

    async def go() -> None:
        async with await Store.open(home / "swarmd.db", clock=lambda: beat_at) as store:
            await store.write_heartbeat(
                pid=pid, started_at=beat_at - 60, version="test", status={"workers": []}
            )

    asyncio.run(go())


def test_status_flags_a_stale_heartbeat_and_exits_1(
    swarmd_env: dict[str, str], home: Path, lock_holder: subprocess.Popen[str]
) -> None:
    write_old_heartbeat(home, lock_holder.pid, age=HEARTBEAT_STALE_SECONDS + 30)

    shown = swarmd("status", env=swarmd_env)
    report = swarmd("status", "--json", env=swarmd_env)

    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert "STALE heartbeat" in shown.stdout
    assert report.returncode == 1
    daemon = json.loads(report.stdout)["daemon"]
    assert daemon["stale"] is True and daemon["pid"] == lock_holder.pid
    assert daemon["heartbeat_age_s"] >= HEARTBEAT_STALE_SECONDS + 30


def test_status_of_a_fresh_heartbeat_exits_0(
    swarmd_env: dict[str, str], home: Path, lock_holder: subprocess.Popen[str]
) -> None:
    write_old_heartbeat(home, lock_holder.pid, age=1.0)

    report = swarmd("status", "--json", env=swarmd_env)

    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["daemon"]["stale"] is False


def test_hung_worker_is_killed_with_reason_hung_and_the_daemon_carries_on(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    env = {
        **swarmd_env,
        "SWARMD_WORKER_HUNG_SECONDS": "2",
        "SWARMD_WORKER_HEARTBEAT_SECONDS": "0.2",
        "SWARMD_SHUTDOWN_GRACE_SECONDS": "1",
    }
    frozen = {
        "title": "frozen",
        "tasks": [
            {
                "name": "freeze",
                "agent": "command",
                "command": python_command(FREEZE_THE_WORKER),
                "max_attempts": 1,
            }
        ],
    }
    later = {"title": "later", "tasks": [{"name": "after", "agent": "echo", "prompt": "hi"}]}
    daemon = Daemon(env, home).start()
    try:
        swarmd("submit", str(write_ticket(tmp_path, frozen, "frozen.json")), env=env)
        workspace = home / "work" / "1" / "freeze"
        wait_until(lambda: workspace.exists() and running_worker_is_stopped(home), timeout=30)
        wait_until(lambda: ticket_of(home, 1).state.is_terminal, timeout=30)
        swarmd("submit", str(write_ticket(tmp_path, later, "later.json")), env=env)
        wait_until(lambda: ticket_of(home, 2).state.is_terminal, timeout=30)
        assert daemon.proc is not None and daemon.proc.poll() is None
    finally:
        daemon.stop()

    (task,) = tasks_of(home, 1)
    assert task.state is TaskState.DEAD
    (attempt,) = attempts_of(home, task.id)
    assert attempt.exit_reason is ExitReason.HUNG
    assert "no heartbeat" in (attempt.error or "")
    assert attempt.pid is not None and not psutil.pid_exists(attempt.pid)
    assert ticket_of(home, 2).state is TicketState.SUCCEEDED


def running_worker_is_stopped(home: Path) -> bool:
    async def pids() -> list[int]:
        async with await Store.open(home / "swarmd.db") as store:
            return [a.pid for _, a in await store.running_attempts() if a.pid]

    for pid in asyncio.run(pids()):
        try:
            if psutil.Process(pid).status() == psutil.STATUS_STOPPED:
                return True
        except psutil.NoSuchProcess:
            continue
    return False
