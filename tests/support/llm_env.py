"""End to end through the CLI: ``swarmd run-ticket FILE --wait`` against the loopback fake LLM.

Each test runs the real command in a subprocess; its workers reach the fake provider, which
serves from a thread of the test process, over loopback TCP. Results are read back from the
store and the archives, as a user would find them.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path
from typing import Any

from tests.support.cli import PROVIDER_VARIABLES, attempts_of, swarmd, tasks_of, write_ticket
from tests.support.cli import cli_env as integration_env
from tests.support.fake_llm import FakeLLMServer

PRIMARY = "openai/gpt-primary"
FALLBACK = "anthropic/claude-fallback"
PRIMARY_WIRE = "gpt-primary"  # the model names the fake server sees in request bodies
FALLBACK_WIRE = "claude-fallback"

# Distinctive and not shaped like a real key (no ``sk-`` prefix), so only swarmd's knowledge
# of its configured secrets, not the log redactor's pattern, can keep them out of sight.
OPENAI_KEY = "e2eOpenAIkey-Zq7VwX4tNp2Lm9Rs"
ANTHROPIC_KEY = "e2eAnthropicKey-Hc5YdK8uBf3Qj6Wg"

ENDPOINT_VARIABLES = (
    "OPENAI_BASE_URL",
    "ANTHROPIC_BASE_URL",
    "MINIMAX_BASE_URL",
    "MINIMAX_API_KEY",
    "OLLAMA_HOST",
)


def offline_cli_env(home: Path) -> dict[str, str]:
    """The CLI's environment on ``home`` with no provider at all, endpoints included."""
    return integration_env(home, hidden=(*PROVIDER_VARIABLES, *ENDPOINT_VARIABLES))


def provider_env(fake_llm: FakeLLMServer) -> dict[str, str]:
    """OpenAI and Anthropic both served by the fake; the chain is PRIMARY then FALLBACK.

    The rate limit is lifted (the default, 20 rpm, spaces requests 3 s apart); the tests of
    the limit set their own.
    """
    return {
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": fake_llm.openai_base_url,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "ANTHROPIC_BASE_URL": fake_llm.anthropic_base_url,
        "SWARMD_PRIMARY_MODEL": PRIMARY,
        "SWARMD_FALLBACK_MODEL": FALLBACK,
        "SWARMD_API_RATE_LIMIT_RPM": "60000",
    }


def llm_ticket(*names: str, **task_fields: Any) -> dict[str, Any]:
    """A ticket of independent llm tasks, each asking for one file named after it."""
    return {
        "title": "e2e",
        "agent": "llm",
        "tasks": [
            {"name": name, "prompt": f"Write the {name} page", **task_fields} for name in names
        ],
    }


def run_ticket(
    tmp_path: Path, env: dict[str, str], ticket: dict[str, Any], *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``swarmd run-ticket FILE --wait`` in a subprocess, from a directory with no ``.env``."""
    path = write_ticket(tmp_path, ticket)
    return swarmd("run-ticket", str(path), "--wait", env=env, timeout=timeout, cwd=tmp_path)


def last_results(home: Path, ticket_id: int = 1) -> dict[str, dict[str, Any]]:
    """Each task's last attempt result (model, tries, files...), by task name."""
    found = {}
    for task in tasks_of(home, ticket_id):
        attempts = attempts_of(home, task.id)
        found[task.name] = dict(attempts[-1].result or {}) if attempts else {}
    return found


def archive_member(path: Path, member: str) -> str:
    with tarfile.open(path) as archive:
        extracted = archive.extractfile(member)
        assert extracted is not None, f"{member} is not a file in {path}"
        return extracted.read().decode()


def archive_texts(path: Path) -> dict[str, str]:
    """Every regular file of a tar.gz, decoded leniently: for searching, not for parsing."""
    texts = {}
    with tarfile.open(path) as archive:
        for info in archive.getmembers():
            extracted = archive.extractfile(info) if info.isfile() else None
            if extracted is not None:
                texts[info.name] = extracted.read().decode(errors="replace")
    return texts


def tried_models(result: dict[str, Any]) -> list[tuple[str, str]]:
    """``(model, outcome)`` for every request an attempt made, in order."""
    return [(t["model"], t["outcome"]) for t in result.get("tries", [])]
