"""The CLI contract, through real ``python -m swarmd`` subprocesses on a temporary home.

Every call goes through ``cli()``, which also checks that no traceback reached stderr: a
user sees one sentence and an exit code, never a stack.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swarmd import __version__
from swarmd.models import TaskState, TicketState
from swarmd.store import Store
from swarmd.tickets import load_ticket_file
from tests.support.cli import (
    Daemon,
    attempts_of,
    read_store,
    swarmd,
    tasks_of,
    ticket_of,
    wait_until,
    write_ticket,
)

ECHO_TICKET = {"title": "greeting", "tasks": [{"name": "hello", "agent": "echo", "prompt": "hi"}]}
PAIR_TICKET = {
    "title": "pair",
    "tasks": [
        {"name": "a", "agent": "echo", "prompt": "first"},
        {"name": "b", "agent": "echo", "prompt": "second", "needs": ["a"]},
    ],
}
SLEEPER_TICKET = {
    "title": "sleeper",
    "tasks": [{"name": "s", "agent": "command", "command": ["sleep", "30"]}],
}
SECRET = "sk-test-abcdefghijklmnop7777"


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``swarmd ARGS``; whatever it exits with, it must not print a traceback."""
    result = swarmd(*args, env=env, timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def sentence(stream: str) -> str:
    """stderr with its whitespace folded, so a message compares as written."""
    return " ".join(stream.split())


def submit(tmp_path: Path, env: dict[str, str], ticket: dict[str, Any], *args: str) -> int:
    result = cli("submit", str(write_ticket(tmp_path, ticket)), *args, env=env)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


def seed(tmp_path: Path, home: Path, ticket: dict[str, Any]) -> int:
    """Queue a ticket straight through the store, where submitting is not what is tested."""
    spec = load_ticket_file(write_ticket(tmp_path, ticket, name="seed.json"))
    ticket_id: int = read_store(home, lambda store: store.submit_ticket(spec)).ticket_id
    return ticket_id


async def complete_every_task(store: Store, ticket_id: int) -> None:
    """Run the ticket to success as a daemon would record it, without running anything."""
    while (claimed := await store.claim_ready_task(ticket_id=ticket_id)) is not None:
        await store.complete_attempt(claimed.attempt.token, result={})


def stored_ids(home: Path) -> list[int]:
    return [t.id for t in read_store(home, lambda store: store.list_tickets())]


def status_json(env: dict[str, str]) -> dict[str, Any]:
    result = cli("status", "--json", env=env)
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["exit_code"] == result.returncode
    return report


@pytest.fixture
def running_daemon(daemon: Daemon) -> Iterator[Daemon]:
    """A started daemon that must stop cleanly, with no traceback in its own stderr."""
    daemon.start()
    yield daemon
    assert daemon.proc is not None and daemon.proc.stderr is not None
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert "Traceback" not in daemon.proc.stderr.read()


# -- submit, tickets, show ---------------------------------------------------------------


def test_submit_prints_the_new_ticket_id(tmp_path: Path, swarmd_env: dict[str, str]) -> None:
    first = submit(tmp_path, swarmd_env, ECHO_TICKET)
    second = submit(tmp_path, swarmd_env, ECHO_TICKET)

    assert (first, second) == (1, 2)


def test_submit_with_the_same_key_returns_the_same_ticket_and_writes_one(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    first = submit(tmp_path, swarmd_env, ECHO_TICKET, "--key", "deploy-42")
    again = submit(tmp_path, swarmd_env, ECHO_TICKET, "--key", "deploy-42")

    assert again == first
    assert stored_ids(home) == [first]


def test_tickets_lists_a_submitted_ticket(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    ticket_id = seed(tmp_path, home, PAIR_TICKET)

    result = cli("tickets", env=swarmd_env)

    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "pair" in line)
    assert row.split()[:2] == [str(ticket_id), "queued"]


def test_tickets_json_lists_a_submitted_ticket_with_its_task_counts(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    ticket_id = seed(tmp_path, home, PAIR_TICKET)

    result = cli("tickets", "--json", env=swarmd_env)

    assert result.returncode == 0, result.stderr
    [ticket] = json.loads(result.stdout)
    assert ticket["id"] == ticket_id
    assert ticket["title"] == "pair"
    assert ticket["state"] == "queued"
    assert ticket["task_counts"] == {"ready": 1, "blocked": 1}


def test_tickets_with_an_unknown_state_exits_2_with_one_sentence(
    swarmd_env: dict[str, str],
) -> None:
    result = cli("tickets", "--state", "bogus", env=swarmd_env)

    assert result.returncode == 2
    assert result.stdout == ""
    message = sentence(result.stderr)
    assert message.count("swarmd:") == 1
    assert "unknown state 'bogus'" in message
    assert all(state.value in message for state in TicketState)


def test_show_prints_the_ticket_and_its_tasks(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    ticket_id = seed(tmp_path, home, PAIR_TICKET)

    result = cli("show", str(ticket_id), env=swarmd_env)

    assert result.returncode == 0, result.stderr
    assert f"ticket {ticket_id}: pair" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines()]
    states = {row[0]: row[1] for row in rows if row and row[0] in ("a", "b")}
    assert states == {"a": "ready", "b": "blocked"}


def test_show_json_holds_the_ticket_its_tasks_and_their_attempts(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    ticket_id = seed(tmp_path, home, PAIR_TICKET)

    result = cli("show", str(ticket_id), "--json", env=swarmd_env)

    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert view["ticket"]["id"] == ticket_id
    assert [(t["name"], t["state"], t["needs"]) for t in view["tasks"]] == [
        ("a", "ready", []),
        ("b", "blocked", ["a"]),
    ]
    assert all(attempts == [] for attempts in view["attempts"].values())
    assert view["outputs"] == {}


@pytest.mark.parametrize("command", ["show", "cancel", "retry"])
def test_an_unknown_ticket_id_exits_2_with_one_sentence(
    swarmd_env: dict[str, str], command: str
) -> None:
    result = cli(command, "99", env=swarmd_env)

    assert result.returncode == 2
    assert sentence(result.stderr) == "swarmd: there is no ticket 99"


def test_a_malformed_ticket_id_exits_2_with_one_sentence(swarmd_env: dict[str, str]) -> None:
    result = cli("show", "abc", env=swarmd_env)

    assert result.returncode == 2
    assert sentence(result.stderr) == "swarmd: 'abc' is not a ticket id (a positive number)"


# -- cancel and retry ----------------------------------------------------------------------


def test_cancel_of_a_ticket_cancels_all_its_unfinished_tasks(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    ticket_id = seed(tmp_path, home, PAIR_TICKET)

    result = cli("cancel", str(ticket_id), env=swarmd_env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cancelled 2 task(s): a, b"
    assert {t.state for t in tasks_of(home, ticket_id)} == {TaskState.CANCELLED}
    assert ticket_of(home, ticket_id).state is TicketState.CANCELLED


def test_cancel_of_one_task_skips_the_tasks_that_need_it(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    ticket_id = seed(tmp_path, home, PAIR_TICKET)

    result = cli("cancel", f"{ticket_id}.a", env=swarmd_env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cancelled 1 task(s): a"
    states = {t.name: t.state for t in tasks_of(home, ticket_id)}
    assert states == {"a": TaskState.CANCELLED, "b": TaskState.SKIPPED}


def test_retry_of_a_cancelled_task_makes_it_ready_again(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    ticket_id = seed(tmp_path, home, PAIR_TICKET)
    assert cli("cancel", f"{ticket_id}.a", env=swarmd_env).returncode == 0

    result = cli("retry", f"{ticket_id}.a", env=swarmd_env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "retrying 2 task(s): a, b"
    states = {t.name: t.state for t in tasks_of(home, ticket_id)}
    assert states == {"a": TaskState.READY, "b": TaskState.BLOCKED}


def test_cancel_of_an_unknown_task_exits_2_naming_it(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    ticket_id = seed(tmp_path, home, PAIR_TICKET)

    result = cli("cancel", f"{ticket_id}.nope", env=swarmd_env)

    assert result.returncode == 2
    assert sentence(result.stderr) == f"swarmd: ticket {ticket_id} has no task named 'nope'"


def test_cancel_of_a_finished_ticket_exits_2_and_changes_nothing(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    ticket_id = seed(tmp_path, home, ECHO_TICKET)
    read_store(home, lambda store: complete_every_task(store, ticket_id))
    assert ticket_of(home, ticket_id).state is TicketState.SUCCEEDED

    result = cli("cancel", str(ticket_id), env=swarmd_env)

    assert result.returncode == 2
    assert sentence(result.stderr) == f"swarmd: ticket {ticket_id} is already finished"
    assert ticket_of(home, ticket_id).state is TicketState.SUCCEEDED


# -- config and version --------------------------------------------------------------------


def test_config_masks_a_provider_key(swarmd_env: dict[str, str]) -> None:
    result = cli("config", env={**swarmd_env, "OPENAI_API_KEY": SECRET})

    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout
    assert "OPENAI_API_KEY=****7777" in result.stdout.splitlines()


def test_config_json_parses_with_the_key_masked(swarmd_env: dict[str, str], home: Path) -> None:
    result = cli("config", "--json", env={**swarmd_env, "OPENAI_API_KEY": SECRET})

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["openai_api_key"] == "****7777"
    assert shown["home"] == str(home)
    assert shown["max_concurrent_workers"] == 10


def test_version_prints_the_package_version(swarmd_env: dict[str, str]) -> None:
    result = cli("--version", env=swarmd_env)

    assert result.returncode == 0
    assert result.stdout.strip() == f"swarmd {__version__}"


# -- swarmd run: settings, the lock, the database ------------------------------------------


def test_run_with_an_invalid_setting_exits_78_naming_the_variable(
    swarmd_env: dict[str, str], home: Path
) -> None:
    env = {**swarmd_env, "SWARMD_MAX_CONCURRENT_WORKERS": "abc"}

    result = cli("run", env=env, timeout=30)

    assert result.returncode == 78
    message = sentence(result.stderr)
    assert message.startswith("swarmd: invalid setting SWARMD_MAX_CONCURRENT_WORKERS:")
    assert message.count("swarmd:") == 1
    assert not (home / "swarmd.db").exists()


def test_a_second_run_on_the_same_home_exits_3_and_leaves_the_first_running(
    swarmd_env: dict[str, str], running_daemon: Daemon
) -> None:
    result = cli("run", env=swarmd_env, timeout=30)

    assert result.returncode == 3
    message = sentence(result.stderr)
    assert "already running" in message
    assert f"pid {running_daemon.pid}" in message
    assert running_daemon.proc is not None and running_daemon.proc.poll() is None
    assert status_json(swarmd_env)["daemon"]["pid"] == running_daemon.pid


def test_run_on_a_corrupt_database_exits_3_and_leaves_the_file_untouched(
    swarmd_env: dict[str, str], home: Path
) -> None:
    database = home / "swarmd.db"
    garbage = b"this is no database, only garbage " * 300
    database.write_bytes(garbage)

    result = cli("run", env=swarmd_env, timeout=30)

    assert result.returncode == 3
    message = sentence(result.stderr)
    assert message.startswith("swarmd: ")
    assert message.count("swarmd:") == 1
    assert str(database) in message
    assert "not a SQLite database" in message
    assert database.read_bytes() == garbage
    assert sorted(p.name for p in home.glob("swarmd.db*")) == ["swarmd.db"]


# -- status ----------------------------------------------------------------------------------


def test_status_without_a_daemon_exits_3_and_says_not_running(
    swarmd_env: dict[str, str],
) -> None:
    result = cli("status", env=swarmd_env)

    assert result.returncode == 3
    assert "daemon: not running" in result.stdout


def test_status_json_without_a_daemon_says_not_running(swarmd_env: dict[str, str]) -> None:
    report = status_json(swarmd_env)

    assert report["exit_code"] == 3
    assert report["daemon"] == {"running": False, "pid": None}
    assert report["workers"] == []


def running_worker_report(env: dict[str, str], ref: str) -> dict[str, Any]:
    """Wait for ``status --json`` to show a worker on ``ref`` (the heartbeat lags a little)."""

    def shows_worker() -> dict[str, Any] | None:
        report = status_json(env)
        return report if [w for w in report["workers"] if w["task"] == ref] else None

    report: dict[str, Any] = wait_until(shows_worker, timeout=30, interval=0.2)
    return report


def test_status_with_a_daemon_exits_0_and_shows_its_workers(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, running_daemon: Daemon
) -> None:
    ticket_id = seed(tmp_path, home, SLEEPER_TICKET)
    running_worker_report(swarmd_env, f"{ticket_id}.s")

    result = cli("status", env=swarmd_env)

    assert result.returncode == 0, result.stderr
    assert f"pid {running_daemon.pid}" in result.stdout
    worker_rows = [line.split() for line in result.stdout.splitlines() if f"{ticket_id}.s" in line]
    assert [row[:3] for row in worker_rows] == [[f"{ticket_id}.s", "1", "command"]]


def test_status_json_with_a_daemon_names_the_daemon_worker_and_gate(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, running_daemon: Daemon
) -> None:
    ticket_id = seed(tmp_path, home, SLEEPER_TICKET)

    report = running_worker_report(swarmd_env, f"{ticket_id}.s")

    assert report["exit_code"] == 0
    assert report["daemon"]["running"] is True
    assert report["daemon"]["pid"] == running_daemon.pid
    assert report["daemon"]["stale"] is False
    [worker] = report["workers"]
    assert worker["agent"] == "command"
    assert worker["pid"] > 0
    assert worker["rss_bytes"] > 0
    assert report["gate"]["allowed"] is True
    assert report["queue"]["running"] == 1


# -- logs --------------------------------------------------------------------------------------


@pytest.fixture
def two_finished_tickets(tmp_path: Path, swarmd_env: dict[str, str]) -> None:
    for name in ("one.json", "two.json"):
        path = write_ticket(tmp_path, ECHO_TICKET, name=name)
        result = cli("run-ticket", str(path), env=swarmd_env)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.usefixtures("two_finished_tickets")
def test_logs_for_one_ticket_show_only_that_tickets_lines(swarmd_env: dict[str, str]) -> None:
    result = cli("logs", "--ticket", "2", "-n", "1000", env=swarmd_env)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("worker_started" in line for line in lines)
    assert any("ticket_finished" in line for line in lines)
    for line in lines:
        assert "task=2.hello" in line or "ticket=2 " in line or line.endswith("ticket=2"), line


@pytest.mark.usefixtures("two_finished_tickets")
def test_logs_json_emits_one_json_event_per_line(swarmd_env: dict[str, str]) -> None:
    result = cli("logs", "--json", "-n", "1000", env=swarmd_env)

    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(isinstance(e, dict) and e["event"] and e["timestamp"] for e in entries)
    finished = [e["ticket"] for e in entries if e["event"] == "ticket_finished"]
    assert finished == [1, 2]


# -- run-ticket --------------------------------------------------------------------------------


def test_run_ticket_wait_with_a_daemon_returns_once_the_daemon_finished_it(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, running_daemon: Daemon
) -> None:
    ticket = {
        "title": "short",
        "tasks": [{"name": "nap", "agent": "command", "command": ["sleep", "1"]}],
    }
    ticket_id = seed(tmp_path, home, ticket)

    result = cli("run-ticket", str(ticket_id), "--wait", env=swarmd_env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ticket {ticket_id} succeeded" in result.stdout
    assert ticket_of(home, ticket_id).state is TicketState.SUCCEEDED
    [task] = tasks_of(home, ticket_id)
    [attempt] = attempts_of(home, task.id)
    assert attempt.pid is not None


def test_run_ticket_without_wait_hands_the_ticket_to_the_daemon_at_once(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, running_daemon: Daemon
) -> None:
    path = write_ticket(tmp_path, SLEEPER_TICKET)

    result = cli("run-ticket", str(path), env=swarmd_env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ticket 1 queued for the daemon (pid {running_daemon.pid})" in result.stdout
    assert not ticket_of(home, 1).state.is_terminal


def test_run_ticket_timeout_without_a_daemon_stops_and_requeues_the_task(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    path = write_ticket(tmp_path, SLEEPER_TICKET)

    began = time.monotonic()
    result = cli("run-ticket", str(path), "--timeout", "1", env=swarmd_env)
    elapsed = time.monotonic() - began

    assert result.returncode != 0
    assert "ticket 1 stopped before it finished" in result.stdout
    assert elapsed < 20, elapsed  # well short of the 30 s the command would take
    [task] = tasks_of(home, 1)
    assert task.state is TaskState.READY
    assert task.failures == 0


# -- bad ticket files ------------------------------------------------------------------------

BAD_TICKETS = {
    "bad-json": ("{not json", "invalid JSON on line 1"),
    "unknown-agent": (
        json.dumps(
            {"title": "x", "tasks": [{"name": "a", "agent": "nosuch", "command": ["true"]}]}
        ),
        "unknown agent 'nosuch'",
    ),
    "no-prompt": (json.dumps({"title": "x", "tasks": [{"name": "a"}]}), 'needs a "prompt"'),
    "cycle": (
        json.dumps(
            {
                "title": "x",
                "agent": "echo",
                "tasks": [
                    {"name": "a", "prompt": "p", "needs": ["b"]},
                    {"name": "b", "prompt": "p", "needs": ["a"]},
                ],
            }
        ),
        "tasks form a cycle through needs: a -> b -> a",
    ),
    "unknown-need": (
        json.dumps(
            {
                "title": "x",
                "agent": "echo",
                "tasks": [{"name": "a", "prompt": "p", "needs": ["zz"]}],
            }
        ),
        'task "a" needs unknown task "zz"',
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_TICKETS))
def test_submitting_a_bad_ticket_file_exits_2_and_writes_nothing(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, kind: str
) -> None:
    existing = seed(tmp_path, home, ECHO_TICKET)
    text, mentions = BAD_TICKETS[kind]
    path = tmp_path / "bad.json"
    path.write_text(text)

    result = cli("submit", str(path), env=swarmd_env)

    assert result.returncode == 2
    assert result.stdout == ""
    message = sentence(result.stderr)
    assert message.count("swarmd:") == 1
    assert mentions in message
    assert stored_ids(home) == [existing]


def test_submitting_a_bad_ticket_file_to_a_new_home_creates_no_database(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")

    result = cli("submit", str(path), env=swarmd_env)

    assert result.returncode == 2
    assert not (home / "swarmd.db").exists()


# -- how errors look -------------------------------------------------------------------------


def test_a_long_error_sentence_stays_on_one_line(swarmd_env: dict[str, str]) -> None:
    # Not a terminal, 80 columns: what journald and a script's pipe get.
    env = {**swarmd_env, "SWARMD_MAX_CONCURRENT_WORKERS": "abc", "COLUMNS": "80"}

    result = cli("run", env=env, timeout=30)

    assert result.returncode == 78
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
