"""What each command loads: the cheap ones stay cheap, and looking never loads spawning code.

Read from ``python -X importtime``, which lists every module a real run of the command
imported, in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import cli_env, swarmd, write_ticket

HEAVY_FOR_VERSION_AND_HELP = ("pydantic_settings", "structlog", "asyncio")
SPAWNING = ("swarmd.spawn", "swarmd.worker", "swarmd.daemon")


def imported_modules(*args: str, env: dict[str, str]) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "swarmd", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    return {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


@pytest.mark.parametrize("args", [("--version",), ("--help",), ()])
def test_version_and_help_load_no_settings_logging_or_asyncio(
    args: tuple[str, ...], home: Path
) -> None:
    modules = imported_modules(*args, env=cli_env(home))
    loaded = sorted(m for m in modules if m.split(".")[0] in HEAVY_FOR_VERSION_AND_HELP)
    assert loaded == []


@pytest.mark.parametrize("command", ["status", "show", "tickets"])
def test_looking_at_the_queue_loads_no_process_spawning_code(
    command: str, home: Path, tmp_path: Path
) -> None:
    env = cli_env(home)
    ticket = write_ticket(tmp_path, {"title": "t", "agent": "echo", "prompt": "hello"})
    assert swarmd("submit", str(ticket), env=env).returncode == 0
    args = (command, "1") if command == "show" else (command,)
    modules = imported_modules(*args, env=env)
    assert "swarmd.store" in modules  # the command did run
    assert sorted(m for m in modules if m.startswith(SPAWNING)) == []


@pytest.mark.parametrize(
    "args",
    [
        ("submit", "{ticket}"),
        ("submit", "--json", "{ticket}"),
        ("run-ticket", "{ticket}", "--wait"),
    ],
)
def test_the_plain_forms_of_the_waited_on_commands_load_no_typer(
    args: tuple[str, ...], home: Path, tmp_path: Path
) -> None:
    """``swarmd submit FILE --wait`` and ``swarmd run-ticket FILE --wait`` start without
    typer (and its pydantic adapters), and their log, a file's, loads no rich (structlog
    imports it for its console renderer alone). (``submit --wait`` would wait for a daemon:
    its routing is in test_plain_forms.py.)"""
    env = cli_env(home)
    ticket = write_ticket(tmp_path, {"title": "t", "agent": "echo", "prompt": "hello"})
    modules = imported_modules(*(arg.format(ticket=ticket) for arg in args), env=env)
    assert "swarmd.store" in modules  # the command did run
    assert sorted(m for m in modules if m.split(".")[0] == "typer") == []
    # ``-X importtime`` lists structlog's refused ``import rich`` too: no module of it ran.
    assert sorted(m for m in modules if m.startswith("rich.")) == []


def test_any_other_form_goes_through_typer(home: Path, tmp_path: Path) -> None:
    env = cli_env(home)
    ticket = write_ticket(tmp_path, {"title": "t", "agent": "echo", "prompt": "hello"})
    modules = imported_modules("submit", str(ticket), "--priority", "3", env=env)
    assert "swarmd.store" in modules
    assert "typer" in modules
