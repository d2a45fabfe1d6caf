"""Why a task failed: the attempt's log and its last lines, wherever the failure is told.

``show``, ``show --json`` and the final summary of ``run-ticket --wait`` and ``submit --wait``
once said only ``command 'sh' failed with exit code 3``. They now add the attempt log's path
and its last lines: bounded, every line escaped (an agent's output is untrusted text), and
never cut without an ellipsis.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Daemon, swarmd_says, write_ticket

# Prints 15 numbered lines on stderr (the attempt's log; its stdout is kept as stdout.txt),
# then a line with a colour escape and a bidi override, then fails.
NOISY_FAILURE = (
    "for i in $(seq 1 15); do echo line $i >&2; done; "
    "printf 'red \\033[31mALERT\\033[0m \\342\\200\\256evil\\n' >&2; exit 3"
)
FAILING = {
    "title": "failing",
    "tasks": [
        {
            "name": "boom",
            "agent": "command",
            "max_attempts": 1,
            "command": ["sh", "-c", NOISY_FAILURE],
        }
    ],
}


def log_of(home: Path, ticket_id: int = 1, task: str = "boom", attempt: int = 1) -> Path:
    return home / "logs" / "attempts" / str(ticket_id) / f"{task}.{attempt}.log"


def assert_tells_the_failure(text: str, home: Path) -> None:
    assert "boom: dead after 1 attempt; attempt 1 ended with error:" in text
    assert "command 'sh' failed with exit code 3" in text
    assert f"log {log_of(home)} (last 10 lines):" in text
    assert "| line 7" in text and "| line 15" in text
    assert "| line 6" not in text  # ten lines, no more
    assert "| red ALERT \\u202eevil" in text  # the colour dropped, the bidi override escaped
    assert "\u202e" not in text and "\x1b" not in text


@pytest.fixture
def failed_ticket(tmp_path: Path, swarmd_env: dict[str, str]) -> dict[str, Any]:
    """The failing ticket run to its end in-process; what ``run-ticket --wait`` said."""
    result = swarmd_says(
        "run-ticket", str(write_ticket(tmp_path, FAILING)), "--wait", env=swarmd_env
    )
    assert result.returncode == 1, result.stderr
    return {"stdout": result.stdout}


def test_run_ticket_wait_ends_with_the_failed_attempts_log_tail(
    failed_ticket: dict[str, Any], home: Path
) -> None:
    assert_tells_the_failure(failed_ticket["stdout"], home)


def test_show_tells_the_failure_with_its_log_tail(
    failed_ticket: dict[str, Any], swarmd_env: dict[str, str], home: Path
) -> None:
    result = swarmd_says("show", "1", env={**swarmd_env, "COLUMNS": "200"})

    assert result.returncode == 0, result.stderr
    assert_tells_the_failure(result.stdout, home)


def test_show_json_holds_the_failure_its_log_path_and_tail(
    failed_ticket: dict[str, Any], swarmd_env: dict[str, str], home: Path
) -> None:
    result = swarmd_says("show", "1", "--json", env=swarmd_env)

    failure = json.loads(result.stdout)["failures"]["boom"]
    assert failure["exit_reason"] == "error"
    assert failure["error"] == "command 'sh' failed with exit code 3"
    assert failure["log"] == str(log_of(home))
    assert failure["log_exists"] is True
    assert failure["log_tail"]["lines"][0] == "line 7"
    assert failure["log_tail"]["lines"][-1] == "red ALERT \\u202eevil"
    assert failure["log_tail"]["earlier"] is True


def test_submit_wait_ends_with_the_failure_on_stderr_and_the_id_alone_on_stdout(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, daemon: Daemon
) -> None:
    daemon.start()

    result = swarmd_says("submit", str(write_ticket(tmp_path, FAILING)), "--wait", env=swarmd_env)

    assert result.returncode == 1
    assert result.stdout == "1\n"
    assert_tells_the_failure(result.stderr, home)


def test_show_cuts_a_long_error_with_an_ellipsis_and_shows_it_whole_below(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    words = " ".join(f"word{i}" for i in range(40))
    ticket = {
        "title": "long",
        "tasks": [
            {
                "name": "loud",
                "agent": "command",
                "max_attempts": 1,
                "command": ["no-such-program-" + words.replace(" ", "-")],
            }
        ],
    }
    swarmd_says("run-ticket", str(write_ticket(tmp_path, ticket)), env=swarmd_env)

    result = swarmd_says("show", "1", env={**swarmd_env, "COLUMNS": "300"})

    row = next(line for line in result.stdout.splitlines() if line.startswith(" loud"))
    assert row.rstrip().endswith("…")
    assert "word39" not in row
    assert any("word39" in line for line in result.stdout.splitlines() if line.startswith("loud:"))
