"""Command agents through a real daemon: stdout in the archive, usage counted, a clean env.

One daemon runs one ticket: a named agent standing in for ``claude -p ... --output-format
json`` (usage read, reply files written), one dumping its environment, and a plain command
that prints. Then the archives, ``status --json`` and ``show --json`` are read.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import standin_claude
from tests.support.cli import Daemon, swarmd, ticket_of, wait_until, write_ticket
from tests.support.llm_env import archive_member, archive_texts, offline_cli_env

pytestmark = pytest.mark.timeout(120)

STANDIN_CLAUDE = str(Path(__file__).resolve().parents[1] / "support" / "standin_claude.py")
CLAUDE_MODEL = f"anthropic/{standin_claude.MODEL}"
AGENTS = f"""
[agents.claude]
kind = "command"
command = [{json.dumps(sys.executable)}, {json.dumps(STANDIN_CLAUDE)}, "-p", "{{prompt}}",
           "--output-format", "json"]
usage = "claude-json"
reply = "files"

[agents.envdump]
kind = "command"
command = ["/usr/bin/env"]
env = ["GRANTED_SETTING"]
"""
TICKET = {
    "title": "outputs",
    "tasks": [
        {"name": "notes", "agent": "claude", "prompt": "write the notes"},
        {"name": "env", "agent": "envdump", "prompt": "-"},
        {
            "name": "plain",
            "agent": "command",
            "command": [sys.executable, "-c", "print('plain output')"],
        },
    ],
}


@dataclass
class Run:
    home: Path
    status: dict[str, Any]
    show: dict[str, Any]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    scratch = tmp_path_factory.mktemp("outputs")
    home = scratch / "home"
    home.mkdir()
    (home / "agents.toml").write_text(AGENTS)
    env = {
        **offline_cli_env(home),
        "GRANTED_SETTING": "granted by name",
        "UNGRANTED_SETTING": "the daemon's alone",
    }
    daemon = Daemon(env, home).start()
    try:
        submitted = swarmd("submit", str(write_ticket(scratch, TICKET)), env=env, cwd=scratch)
        assert submitted.returncode == 0, submitted.stderr
        wait_until(lambda: ticket_of(home, 1).state.is_terminal, timeout=60)
        status = json.loads(swarmd("status", "--json", env=env, cwd=scratch).stdout)
    finally:
        daemon.stop()
    show = json.loads(swarmd("show", "1", "--json", env=env, cwd=scratch).stdout)
    yield Run(home, status, show)


def task_archive(run: Run, task: str) -> Path:
    return run.home / "outputs" / "1" / f"{task}.tar.gz"


def last_result(run: Run, task: str) -> dict[str, Any]:
    [task_id] = [t["id"] for t in run.show["tasks"] if t["name"] == task]
    result: dict[str, Any] = run.show["attempts"][str(task_id)][-1]["result"]
    return result


def test_a_command_tasks_stdout_is_in_its_archive(run: Run) -> None:
    assert archive_member(task_archive(run, "plain"), "files/stdout.txt") == "plain output\n"


def test_a_named_agents_answer_and_reply_files_are_in_its_archive_and_the_delivery(
    run: Run,
) -> None:
    files = archive_texts(task_archive(run, "notes"))
    assert files["files/notes/answer.md"] == "write the notes"
    assert files["files/response.md"] == standin_claude.answer_for("write the notes")
    assert json.loads(files["files/stdout.txt"])["type"] == "result"
    delivered = archive_texts(run.home / "outputs" / "1" / "delivery.tar.gz")
    assert delivered["files/notes/answer.md"] == "write the notes"


def test_the_cli_agents_tokens_and_cost_count_in_status_and_show(run: Run) -> None:
    prompt_tokens = (
        standin_claude.INPUT_TOKENS
        + standin_claude.CACHE_WRITE_TOKENS
        + standin_claude.CACHE_READ_TOKENS
    )
    today = run.status["usage_today"]["by_model"][CLAUDE_MODEL]
    assert today["prompt_tokens"] == prompt_tokens
    assert today["completion_tokens"] == standin_claude.OUTPUT_TOKENS
    assert today["cost_usd"] == round(standin_claude.COST_USD, 6)
    result = last_result(run, "notes")
    assert result["model"] == CLAUDE_MODEL
    assert result["cost_usd"] == standin_claude.COST_USD
    manifest = json.loads(archive_member(task_archive(run, "notes"), "manifest.json"))
    assert "usage" not in manifest  # run metadata: the attempt's result keeps it


def test_a_command_sees_its_base_environment_and_grants_and_not_the_daemons(run: Run) -> None:
    dumped = archive_member(task_archive(run, "env"), "files/stdout.txt")
    seen = dict(line.split("=", 1) for line in dumped.splitlines())
    assert seen["GRANTED_SETTING"] == "granted by name"
    assert seen["SWARMD_TASK"] == "env"
    assert "PATH" in seen and "HOME" in seen
    leaked = {"UNGRANTED_SETTING", "SWARMD_HOME", "PYTHONUNBUFFERED", "NOTIFY_SOCKET"} & set(seen)
    assert leaked == set()
