"""A command task stopped the normal ways leaves no traceback in its attempt's log."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from swarmd.models import ExitReason
from tests.support.cli import Daemon, attempts_of, swarmd, tasks_of, wait_until, write_ticket

TASKS = 4
# Dies of the group's SIGTERM at once, as most agent CLIs do: the race with the worker's own
# SIGTERM to it is what used to leave a ProcessLookupError traceback.
PRINT_THEN_SLEEP = "import time; print('started', flush=True); time.sleep(60)"


def start_sleepers(tmp_path: Path, env: dict[str, str], home: Path) -> None:
    tasks = [
        {"name": f"s{i}", "agent": "command", "command": [sys.executable, "-c", PRINT_THEN_SLEEP]}
        for i in range(TASKS)
    ]
    path = write_ticket(tmp_path, {"title": "sleepers", "tasks": tasks})
    assert swarmd("submit", str(path), env=env).returncode == 0
    workspaces = [home / "work" / "1" / f"s{i}" / "stdout.txt" for i in range(TASKS)]
    wait_until(lambda: all(p.exists() and p.read_text() == "started\n" for p in workspaces))


def attempt_logs(home: Path) -> dict[str, str]:
    logs = sorted((home / "logs" / "attempts" / "1").glob("*.log"))
    assert len(logs) == TASKS
    return {path.name: path.read_text() for path in logs}


def last_reasons(home: Path) -> set[ExitReason | None]:
    return {attempts_of(home, task.id)[-1].exit_reason for task in tasks_of(home, 1)}


def test_cancelling_running_command_tasks_leaves_no_traceback(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, daemon: Daemon
) -> None:
    daemon.start()
    start_sleepers(tmp_path, swarmd_env, home)

    assert swarmd("cancel", "1", env=swarmd_env).returncode == 0
    wait_until(lambda: last_reasons(home) == {ExitReason.CANCELLED})

    logs = attempt_logs(home)
    assert {name: log for name, log in logs.items() if "Traceback" in log} == {}


def test_sigterm_to_the_daemon_leaves_no_traceback_in_the_attempt_logs(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, daemon: Daemon
) -> None:
    daemon.start()
    start_sleepers(tmp_path, swarmd_env, home)

    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0

    assert last_reasons(home) == {ExitReason.INTERRUPTED}
    logs = attempt_logs(home)
    assert {name: log for name, log in logs.items() if "Traceback" in log} == {}
