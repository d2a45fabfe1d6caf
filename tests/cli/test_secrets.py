"""API keys stay secret: not in a log line, a CLI output, an archive, or an ungranted agent.

One daemon runs one ticket built to tempt a leak: the fake provider quotes the key it was
sent in its error messages, a model refuses a request (so its error travels into the task's
state, the logs and the CLI), another fails once then answers (so the error lands in the
attempt's result, which ``show --json`` prints), and two command agents dump their
environment — one granted ``OPENAI_API_KEY`` by ``agents.toml``, one not. Then every surface
is searched.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Daemon, swarmd, wait_until, write_ticket
from tests.support.fake_llm import FakeLLMServer, Fault
from tests.support.llm_env import (
    ANTHROPIC_KEY,
    FALLBACK_WIRE,
    OPENAI_KEY,
    PRIMARY_WIRE,
    archive_texts,
    provider_env,
)
from tests.support.llm_env import offline_cli_env as cli_env

# One daemon run and a dozen CLI commands make the first test's setup: slow on a busy host.
pytestmark = pytest.mark.timeout(120)

DUMP_ENV = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
KEYS = (OPENAI_KEY, ANTHROPIC_KEY)
# Providers quote a prefix or suffix of a key in their errors; a leak need not be whole.
FRAGMENTS = tuple(fragment for key in KEYS for fragment in (key[:12], key[4:-4]))


def leaked(text: str) -> list[str]:
    return [f for f in (*KEYS, *FRAGMENTS) if f in text]


@dataclass
class LeakyRun:
    home: Path
    scratch: Path
    outputs: dict[str, str]  # CLI command -> its stdout and stderr
    status: dict[str, Any]


@pytest.fixture(scope="module")
def leaky_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LeakyRun]:
    scratch = tmp_path_factory.mktemp("secrets")
    home = scratch / "home"
    home.mkdir()
    granted_command = [sys.executable, "-c", DUMP_ENV, str(scratch / "env-granted.json")]
    (home / "agents.toml").write_text(
        "[agents.keyed]\n"
        'kind = "command"\n'
        f"command = {json.dumps(granted_command)}\n"
        'env = ["OPENAI_API_KEY"]\n'
    )
    ticket = {
        "title": "tempting",
        "agent": "llm",
        "tasks": [
            {"name": "refused", "model": ["openai/gpt-refuses"], "prompt": "Go", "max_attempts": 1},
            {"name": "flaky", "model": ["anthropic/claude-flaky"], "prompt": "Go"},
            {"name": "primary_down", "prompt": "Go"},
            {
                "name": "plain",
                "agent": "command",
                "command": [sys.executable, "-c", DUMP_ENV, str(scratch / "env-plain.json")],
            },
            {"name": "granted", "agent": "keyed", "prompt": "dump the environment"},
        ],
    }
    with FakeLLMServer() as fake_llm:
        fake_llm.script("gpt-refuses", default=Fault.http(400, message="Bad key {api_key}"))
        fake_llm.script(
            "claude-flaky", Fault.http(500, retry_after=0, message="Upstream lost {api_key}")
        )
        fake_llm.script(PRIMARY_WIRE, default=Fault.http(401))  # OpenAI's quotes the key
        env = {**cli_env(home), **provider_env(fake_llm)}
        daemon = Daemon(env, home).start()
        try:
            outputs = {"submit --wait": run(env, scratch, "submit", ticket_file(scratch, ticket))}
            status = wait_until(lambda: status_showing_models(env, scratch), timeout=30)
            for command in (
                ("run-ticket", "1", "--wait"),
                ("status",),
                ("status", "--json"),
                ("config",),
                ("config", "--json"),
                ("doctor", "--providers", "--json"),
                ("show", "1"),
                ("show", "1", "--json"),
                ("tickets", "--json"),
                ("logs", "-n", "1000"),
                ("logs", "--json", "-n", "1000"),
            ):
                outputs[" ".join(command)] = run(env, scratch, *command)
        finally:
            daemon.stop()
        assert fake_llm.count(FALLBACK_WIRE) >= 1, "the primary_down task reached its fallback"
    yield LeakyRun(home, scratch, outputs, status)


def ticket_file(directory: Path, ticket: dict[str, Any]) -> str:
    return str(write_ticket(directory, ticket))


def run(env: dict[str, str], cwd: Path, *args: str) -> str:
    done: subprocess.CompletedProcess[str] = swarmd(*args, env=env, cwd=cwd)
    return done.stdout + done.stderr


def status_showing_models(env: dict[str, str], cwd: Path) -> dict[str, Any] | None:
    """``status --json`` once the daemon's heartbeat carries every model's last error."""
    report: dict[str, Any] = json.loads(swarmd("status", "--json", env=env, cwd=cwd).stdout)
    models = report.get("models") or {}
    wanted = ("openai/gpt-refuses", "anthropic/claude-flaky", f"openai/{PRIMARY_WIRE}")
    return report if all(models.get(m, {}).get("last_error") for m in wanted) else None


def test_errors_quoting_the_key_reach_every_surface_redacted(leaky_run: LeakyRun) -> None:
    models = leaky_run.status["models"]
    assert "Bad key ****" in models["openai/gpt-refuses"]["last_error"]
    assert "Upstream lost ****" in models["anthropic/claude-flaky"]["last_error"]
    assert "Bad key ****" in leaky_run.outputs["run-ticket 1 --wait"]
    assert "Bad key" in leaky_run.outputs["show 1 --json"]


def test_no_key_in_any_log_file(leaky_run: LeakyRun) -> None:
    logs = leaky_run.home / "logs"
    files = [path for path in logs.rglob("*") if path.is_file()]
    assert logs / "swarmd.jsonl" in files
    assert any(path.parent.parent.name == "attempts" for path in files)
    found = {str(p): leaked(p.read_text(errors="replace")) for p in files}
    assert {path: hits for path, hits in found.items() if hits} == {}
    assert "Bad key" in (logs / "swarmd.jsonl").read_text()


def test_no_key_in_the_output_of_any_command(leaky_run: LeakyRun) -> None:
    found = {command: leaked(output) for command, output in leaky_run.outputs.items()}
    assert {command: hits for command, hits in found.items() if hits} == {}


def test_config_output_masks_each_key_to_its_last_four_characters(leaky_run: LeakyRun) -> None:
    shown = json.loads(leaky_run.outputs["config --json"])
    assert shown["openai_api_key"] == "****" + OPENAI_KEY[-4:]
    assert shown["anthropic_api_key"] == "****" + ANTHROPIC_KEY[-4:]


def test_no_key_in_any_archive(leaky_run: LeakyRun) -> None:
    archives = sorted((leaky_run.home / "outputs").rglob("*.tar.gz"))
    names = {path.name for path in archives}
    assert {"delivery.tar.gz", "flaky.tar.gz", "primary_down.tar.gz", "granted.tar.gz"} <= names
    texts = {f"{a.name}:{m}": t for a in archives for m, t in archive_texts(a).items()}
    # A failed try is run metadata: the attempt's result keeps it, the archive does not.
    assert "Upstream lost ****" in leaky_run.outputs["show 1 --json"]
    assert not any("Upstream lost" in text for text in texts.values())
    found = {where: leaked(text) for where, text in texts.items()}
    assert {where: hits for where, hits in found.items() if hits} == {}


def test_no_key_anywhere_under_the_home(leaky_run: LeakyRun) -> None:
    files = [path for path in leaky_run.home.rglob("*") if path.is_file()]
    assert leaky_run.home / "swarmd.db" in files
    found = {str(p): leaked(p.read_bytes().decode(errors="replace")) for p in files}
    assert {path: hits for path, hits in found.items() if hits} == {}


def test_command_agent_not_granted_a_key_sees_none(leaky_run: LeakyRun) -> None:
    env = json.loads((leaky_run.scratch / "env-plain.json").read_text())
    assert env["SWARMD_TASK"] == "plain"
    assert not {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"} & set(env)
    assert leaked(json.dumps(env)) == []


def test_command_agent_granted_a_key_sees_that_key_alone(leaky_run: LeakyRun) -> None:
    env = json.loads((leaky_run.scratch / "env-granted.json").read_text())
    assert env["SWARMD_TASK"] == "granted"
    assert env["OPENAI_API_KEY"] == OPENAI_KEY
    assert "ANTHROPIC_API_KEY" not in env
    assert leaked(json.dumps(env)) == [OPENAI_KEY, *FRAGMENTS[:2]]
