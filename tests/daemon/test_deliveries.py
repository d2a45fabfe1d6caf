"""Every finished ticket gets its delivery, whatever died in between.

A delivery is written after its ticket finished; the store records it once written. These
tests make the window by hand (a finished ticket whose delivery and mark are gone, as a
daemon killed between the two leaves it) and by a cancel from the command line, which
finishes a ticket in another process; the chaos test makes it with real kills.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from tests.support.cli import Daemon, swarmd, wait_until, write_ticket

TWO_TASKS = {
    "title": "two",
    "agent": "echo",
    "tasks": [{"name": "a", "prompt": "first"}, {"name": "b", "prompt": "second", "needs": ["a"]}],
}


def forget_delivery(home: Path, ticket_id: int) -> None:
    """The state a daemon killed after the ticket finished, before its delivery, leaves."""
    (home / "outputs" / str(ticket_id) / "delivery.tar.gz").unlink()
    with contextlib.closing(sqlite3.connect(home / "swarmd.db", isolation_level=None)) as db:
        db.execute("UPDATE tickets SET delivered_at = NULL WHERE id = ?", (ticket_id,))


def run_to_the_end(tmp_path: Path, env: dict[str, str]) -> None:
    result = swarmd("run-ticket", str(write_ticket(tmp_path, TWO_TASKS)), "--wait", env=env)
    assert result.returncode == 0, result.stderr


def test_a_finished_ticket_without_its_delivery_gets_it_when_the_daemon_starts(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    run_to_the_end(tmp_path, swarmd_env)
    forget_delivery(home, 1)
    delivery = home / "outputs" / "1" / "delivery.tar.gz"

    daemon = Daemon(swarmd_env, home).start()
    try:
        wait_until(delivery.exists)
    finally:
        daemon.stop()

    check = swarmd("verify-archive", str(delivery), env=swarmd_env)
    assert check.returncode == 0, check.stderr
    listing = swarmd("show", "1", "--json", env=swarmd_env)
    assert listing.returncode == 0


def test_a_lost_task_archive_is_built_again_from_its_workspace_before_the_delivery(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    run_to_the_end(tmp_path, swarmd_env)
    forget_delivery(home, 1)
    task_archive = home / "outputs" / "1" / "a.tar.gz"
    task_archive.unlink()

    daemon = Daemon(swarmd_env, home).start()
    try:
        wait_until((home / "outputs" / "1" / "delivery.tar.gz").exists)
    finally:
        daemon.stop()

    assert swarmd("verify-archive", str(task_archive), env=swarmd_env).returncode == 0
    delivery = swarmd("verify-archive", str(home / "outputs/1/delivery.tar.gz"), env=swarmd_env)
    assert delivery.returncode == 0, delivery.stderr


def test_a_ticket_cancelled_from_the_command_line_is_delivered_by_the_running_daemon(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    env = {**swarmd_env, "SWARMD_MAX_CONCURRENT_WORKERS": "1"}
    busy = {
        "title": "busy",
        "tasks": [{"name": "s", "agent": "command", "command": ["sleep", "30"]}],
    }
    daemon = Daemon(env, home).start()
    try:
        occupying = write_ticket(tmp_path, busy, "busy.json")
        assert swarmd("submit", str(occupying), env=env).returncode == 0
        wait_until((home / "work" / "1").exists)
        waiting = write_ticket(tmp_path, TWO_TASKS, "waiting.json")
        assert swarmd("submit", str(waiting), env=env).returncode == 0
        # Ticket 2 never ran: the cancel finishes it here, in this process, not the daemon.
        assert swarmd("cancel", "2", env=env).returncode == 0
        wait_until((home / "outputs" / "2" / "delivery.tar.gz").exists, timeout=15)
    finally:
        daemon.stop()
    check = swarmd("verify-archive", str(home / "outputs/2/delivery.tar.gz"), env=env)
    assert check.returncode == 0, check.stderr
