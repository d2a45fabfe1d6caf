"""Every finished ticket gets its delivery, whatever died in between.

A delivery is written after its ticket finished; the store records it once written, or
records why it failed, and whoever waits for the ticket (``submit --wait``) waits for that
too. These tests make the window by hand (a finished ticket whose delivery and mark are gone, as a
daemon killed between the two leaves it) and by a cancel from the command line, which
finishes a ticket in another process; the chaos test makes it with real kills.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from swarmd.errors import NotFoundError
from tests.support.child_processes import OrphanWatch, poll_until
from tests.support.cli import Daemon, swarmd, ticket_of, wait_until, write_ticket

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


BIG_OUTPUTS = {
    "title": "big outputs",
    "tasks": [
        {
            "name": f"t{n}",
            "agent": "command",
            # Incompressible: merging these into the delivery takes a good part of a second.
            "command": ["sh", "-c", "head -c 6000000 /dev/urandom > out.bin"],
        }
        for n in range(4)
    ],
}


def test_submit_wait_returns_once_the_delivery_is_written(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    daemon = Daemon(swarmd_env, home).start()
    try:
        ticket = write_ticket(tmp_path, BIG_OUTPUTS)
        result = swarmd("submit", str(ticket), "--wait", env=swarmd_env)
        delivery = home / "outputs" / "1" / "delivery.tar.gz"
        # At once, before anything else could write it: the wait ended after the delivery.
        assert delivery.exists()
    finally:
        daemon.stop()
    assert result.returncode == 0, result.stderr
    assert f"delivery: {delivery}" in result.stderr.splitlines()
    check = swarmd("verify-archive", str(delivery), env=swarmd_env)
    assert check.returncode == 0, check.stderr


def test_a_delivery_that_fails_is_recorded_and_ends_the_wait_with_its_reason(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    slow = {
        "title": "slow",
        "tasks": [{"name": "s", "agent": "command", "command": ["sleep", "1"]}],
    }
    daemon = Daemon(swarmd_env, home).start()
    try:
        submitted = swarmd("submit", str(write_ticket(tmp_path, slow)), env=swarmd_env)
        assert submitted.returncode == 0, submitted.stderr
        # A directory where the delivery goes: the daemon cannot put the archive there.
        (home / "outputs" / "1" / "delivery.tar.gz" / "in-the-way").mkdir(parents=True)
        started = time.monotonic()
        result = swarmd("run-ticket", "1", "--wait", env=swarmd_env)
        waited = time.monotonic() - started
    finally:
        daemon.stop()
    assert result.returncode == 0, result.stderr  # the ticket itself succeeded
    lines = result.stdout.splitlines() + result.stderr.splitlines()
    assert any(line.startswith("delivery failed: ") for line in lines), lines
    assert waited < 10  # the failure ended the wait; no heartbeat had to go stale
    with contextlib.closing(sqlite3.connect(home / "swarmd.db")) as db:
        kinds = [row[0] for row in db.execute("SELECT kind FROM events WHERE ticket_id = 1")]
    assert "delivery_failed" in kinds
    # What the operator meets later: show says so, and why.
    shown = swarmd("show", "1", env=swarmd_env)
    assert shown.returncode == 0, shown.stderr
    assert any(line.startswith("delivery: failed: ") for line in shown.stdout.splitlines())
    as_json = json.loads(swarmd("show", "1", "--json", env=swarmd_env).stdout)
    assert as_json["delivery"]["written"] is False
    assert as_json["delivery"]["error"]


def ticket_finished(home: Path, ticket_id: int) -> bool:
    try:
        return ticket_of(home, ticket_id).state.is_terminal
    except NotFoundError:  # not submitted yet
        return False


def test_a_wait_outlives_a_daemon_killed_between_the_finish_and_the_delivery(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, orphans: OrphanWatch
) -> None:
    """The window after a ticket finishes and before its delivery is written, with somebody
    waiting: the daemon is SIGKILLed in it, nothing it started survives, and the wait goes
    on until the next daemon has written the delivery."""
    first = Daemon(swarmd_env, home).start()
    waiting = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "swarmd",
            "submit",
            str(write_ticket(tmp_path, BIG_OUTPUTS)),
            "--wait",
        ],
        env=swarmd_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    second = None
    try:
        delivery = home / "outputs" / "1" / "delivery.tar.gz"
        finished = poll_until(lambda: ticket_finished(home, 1), timeout=60, interval=0.005)
        assert finished
        assert not delivery.exists()  # in the window: merging 24 MB takes a while
        first.signal(signal.SIGKILL)
        first.wait()
        first.stop()
        left = poll_until(
            lambda: [p.pid for p in orphans.survivors()] == [waiting.pid], timeout=10.0
        )
        assert left, [p.pid for p in orphans.survivors()]  # only the waiting command
        assert waiting.poll() is None  # the dead daemon's heartbeat is fresh: it waits on
        second = Daemon(swarmd_env, home).start()
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
        if second is not None:
            second.stop()
    assert waiting.returncode == 0, err
    assert out.strip() == "1"
    assert f"delivery: {delivery}" in err.splitlines()
    check = swarmd("verify-archive", str(delivery), env=swarmd_env)
    assert check.returncode == 0, check.stderr
    assert orphans.wait_for_none(timeout=10.0) == []
