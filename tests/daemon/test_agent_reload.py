"""A running daemon follows agents.toml: new agents work, a broken file is survived, SIGHUP."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from swarmd.models import ExitReason, TaskSpec, TaskState, TicketSpec, TicketState
from swarmd.store import Store
from tests.support.cli import (
    Daemon,
    attempts_of,
    log_events,
    swarmd,
    tasks_of,
    ticket_of,
    wait_until,
    write_ticket,
)


def command_agent(name: str, text: str = "done") -> str:
    return (
        f"[agents.{name}]\n"
        'kind = "command"\n'
        f'command = ["{sys.executable}", "-c", "print({text!r})"]\n'
    )


def submit(tmp_path: Path, env: dict[str, str], agent: str) -> int:
    ticket = {"title": agent, "tasks": [{"name": "t", "agent": agent, "prompt": "go"}]}
    result = swarmd("submit", str(write_ticket(tmp_path, ticket, f"{agent}.json")), env=env)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1])


def submit_to_the_store(home: Path, agent: str) -> int:
    """A one-task ticket for ``agent``, written straight into the queue as the CLI would,
    without the CLI's check of the agent's name."""

    async def plant() -> int:
        async with await Store.open(home / "swarmd.db") as store:
            task = TaskSpec(name="t", agent=agent, prompt="go", max_attempts=3)
            return (await store.submit_ticket(TicketSpec(title=agent, tasks=(task,)))).ticket_id

    return asyncio.run(plant())


def finished(home: Path, ticket_id: int) -> TicketState:
    wait_until(lambda: ticket_of(home, ticket_id).state.is_terminal, timeout=30)
    return ticket_of(home, ticket_id).state


def events(home: Path, name: str) -> list[dict[str, Any]]:
    return [e for e in log_events(home) if e.get("event") == name]


def test_an_agent_added_while_the_daemon_runs_does_its_task(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, daemon: Daemon
) -> None:
    daemon.start()
    (home / "agents.toml").write_text(command_agent("late"))

    ticket_id = submit(tmp_path, swarmd_env, "late")

    assert finished(home, ticket_id) is TicketState.SUCCEEDED
    [task] = tasks_of(home, ticket_id)
    assert [a.exit_reason for a in attempts_of(home, task.id)] == [ExitReason.OK]


def test_a_task_whose_agent_the_daemon_does_not_know_fails_once_naming_it_and_the_file(
    swarmd_env: dict[str, str], home: Path, daemon: Daemon
) -> None:
    daemon.start()

    # The CLI refuses such a ticket: it happens to an agent removed from the file after submit.
    ticket_id = submit_to_the_store(home, "ghost")

    assert finished(home, ticket_id) is TicketState.FAILED
    [task] = tasks_of(home, ticket_id)
    assert task.state is TaskState.DEAD
    [attempt] = attempts_of(home, task.id)
    assert attempt.error is not None
    assert "unknown agent 'ghost'" in attempt.error
    assert str(home / "agents.toml") in attempt.error


def test_an_invalid_agents_file_is_logged_once_and_the_last_good_agents_still_work(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, daemon: Daemon
) -> None:
    agents = home / "agents.toml"
    agents.write_text(command_agent("good"))
    daemon.start()

    agents.write_text("[agents.good\n")
    wait_until(lambda: events(home, "agents_file_invalid"))
    # The CLI now reads the broken file and refuses every ticket.
    ticket_id = submit_to_the_store(home, "good")
    assert finished(home, ticket_id) is TicketState.SUCCEEDED
    time.sleep(2.5)  # the once-a-second check runs a few times over the broken file

    [invalid] = events(home, "agents_file_invalid")
    assert "is not valid TOML" in invalid["error"]
    agents.write_text(command_agent("good") + command_agent("better"))
    wait_until(lambda: any("better" in e["agents"] for e in events(home, "agents_reloaded")))


def test_sighup_rereads_the_agents_file_even_when_its_stat_looks_unchanged(
    home: Path, daemon: Daemon
) -> None:
    agents = home / "agents.toml"
    agents.write_text(command_agent("first"))
    before = os.stat(agents)
    daemon.start()

    # Same inode, size and modification time: only a forced read can see this edit.
    agents.write_text(command_agent("again"))
    os.utime(agents, ns=(before.st_atime_ns, before.st_mtime_ns))
    daemon.signal(signal.SIGHUP)

    wait_until(lambda: any("again" in e["agents"] for e in events(home, "agents_reloaded")))
    assert daemon.proc is not None and daemon.proc.poll() is None
