"""Waiting for a ticket: the timeout's exit code, Ctrl-C, and why a ticket stays queued.

``run-ticket --timeout`` exits 1 whether or not a daemon runs the ticket (README: "1 the
ticket failed or was cancelled, or run-ticket --timeout stopped it"); Ctrl-C says what
became of the ticket and how to cancel it; a gate that holds the ticket's tasks is named,
once per change, with or without a daemon; ``status`` on a new home writes nothing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import (
    Daemon,
    one_sentence,
    read_store,
    swarmd_says,
    tasks_of,
    wait_until,
    write_ticket,
)

SLEEPER = {
    "title": "sleeper",
    "tasks": [{"name": "s", "agent": "command", "command": ["sleep", "30"]}],
}
NO_MEMORY_IS_ENOUGH = {"SWARMD_MIN_FREE_MEMORY_MB": str(2**24)}


def test_run_ticket_timeout_on_a_daemon_exits_1_and_says_the_ticket_keeps_running(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, daemon: Daemon
) -> None:
    daemon.start()

    result = swarmd_says(
        "run-ticket",
        str(write_ticket(tmp_path, SLEEPER)),
        "--wait",
        "--timeout",
        "1",
        env=swarmd_env,
    )

    assert result.returncode == 1, result.stderr
    assert result.stdout.strip() == (
        f"ticket 1 did not finish within 1 s; it keeps running on the daemon "
        f"(pid {daemon.pid}); to stop it: swarmd cancel 1"
    )


def task_runs(home: Path) -> bool:
    if not (home / "swarmd.db").exists():
        return False
    tasks = tasks_of(home, 1) if stored_tickets(home) else []
    return bool(tasks) and tasks[0].state.value == "running"


def stored_tickets(home: Path) -> int:
    return len(read_store(home, lambda store: store.list_tickets()))


def interrupt_after_it_runs(
    args: list[str], env: dict[str, str], home: Path
) -> subprocess.CompletedProcess[str]:
    """Start ``swarmd ARGS``, press Ctrl-C once ticket 1's task runs, and collect the result."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarmd", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: task_runs(home), timeout=30, interval=0.1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("command", ["run-ticket", "submit"])
def test_ctrl_c_while_waiting_on_a_daemon_says_the_ticket_runs_on_and_how_to_cancel_it(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, daemon: Daemon, command: str
) -> None:
    daemon.start()
    path = write_ticket(tmp_path, SLEEPER)

    result = interrupt_after_it_runs([command, str(path), "--wait"], swarmd_env, home)

    assert result.returncode == 130
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"swarmd: stopped waiting for ticket 1; it keeps running on the daemon "
        f"(pid {daemon.pid}); to stop it: swarmd cancel 1"
    )
    assert tasks_of(home, 1)[0].state.value == "running"


def gate_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "gate" in line]


def test_run_ticket_wait_on_a_daemon_names_the_gate_that_holds_it_once(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    daemon = Daemon({**swarmd_env, **NO_MEMORY_IS_ENOUGH}, home)
    try:
        daemon.start()
        result = swarmd_says(
            "run-ticket",
            str(write_ticket(tmp_path, SLEEPER)),
            "--wait",
            "--timeout",
            "5",
            env=swarmd_env,
        )
    finally:
        daemon.stop()

    assert result.returncode == 1
    [line] = gate_lines(result.stderr)  # heartbeats every 2 s: the figures moved, not the cause
    assert line.startswith("ticket 1 waits: the gate holds: available memory ")
    assert line.endswith(f"is below SWARMD_MIN_FREE_MEMORY_MB={2**24}")


def test_run_ticket_without_a_daemon_names_the_gate_that_holds_it(
    tmp_path: Path, swarmd_env: dict[str, str]
) -> None:
    result = swarmd_says(
        "run-ticket",
        str(write_ticket(tmp_path, SLEEPER)),
        "--timeout",
        "5",
        env={**swarmd_env, **NO_MEMORY_IS_ENOUGH},
    )

    assert result.returncode == 1
    assert "ticket 1 stopped before it finished" in result.stdout
    [line] = gate_lines(result.stderr)
    assert line.startswith("ticket 1 waits: the gate holds: available memory ")


def test_status_on_a_new_home_says_no_database_and_creates_none(
    swarmd_env: dict[str, str], home: Path
) -> None:
    shown = swarmd_says("status", env=swarmd_env)
    report = swarmd_says("status", "--json", env=swarmd_env)

    assert shown.returncode == 3 and report.returncode == 3
    assert shown.stdout.splitlines() == [
        "daemon: not running",
        f"database: none yet at {home / 'swarmd.db'}",
    ]
    assert json.loads(report.stdout)["database"] == {
        "path": str(home / "swarmd.db"),
        "exists": False,
    }
    assert list(home.iterdir()) == []


def test_tickets_on_a_new_home_lists_none_and_creates_nothing(
    swarmd_env: dict[str, str], home: Path
) -> None:
    result = swarmd_says("tickets", env=swarmd_env)

    assert (result.returncode, result.stdout.strip()) == (0, "no tickets")
    assert list(home.iterdir()) == []
    assert one_sentence(swarmd_says("cancel", "3", env=swarmd_env).stderr) == (
        "swarmd: there is no ticket 3"
    )
    assert list(home.iterdir()) == []
