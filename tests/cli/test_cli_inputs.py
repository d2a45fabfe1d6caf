"""Bad values on the command line: one sentence, exit 2, nothing written, never a traceback.

Integers SQLite cannot hold (past 64 bits) once crashed ``show``, ``cancel``, ``retry``,
``run-ticket``, ``--limit`` and ``--priority`` with an OverflowError; a ``--timeout`` that
cannot be waited for once wrote the ticket and then failed. Every value is now checked
before settings are loaded or a file is opened.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import one_sentence, swarmd_says, write_ticket

HUGE = "9" * 30
INT64_MAX = 2**63 - 1
ECHO_TICKET = {"title": "greeting", "tasks": [{"name": "hello", "agent": "echo", "prompt": "hi"}]}


def written(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir())


@pytest.mark.parametrize(
    "args",
    [
        ("show", HUGE),
        ("cancel", HUGE),
        ("retry", f"{HUGE}.hello"),
        ("run-ticket", HUGE),
        ("show", str(INT64_MAX + 1)),
    ],
)
def test_a_ticket_id_past_64_bits_is_refused_with_one_sentence(
    swarmd_env: dict[str, str], home: Path, args: tuple[str, ...]
) -> None:
    result = swarmd_says(*args, env=swarmd_env)

    assert result.returncode == 2
    assert "is not a ticket id: ids go up to 9223372036854775807" in one_sentence(result.stderr)
    assert written(home) == []


def test_the_largest_64_bit_id_is_a_ticket_id_that_does_not_exist(
    swarmd_env: dict[str, str], home: Path
) -> None:
    result = swarmd_says("show", str(INT64_MAX), env=swarmd_env)

    assert result.returncode == 2
    assert one_sentence(result.stderr) == f"swarmd: there is no ticket {INT64_MAX}"
    assert written(home) == []  # looking for a ticket creates no database


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("tickets", "--limit", HUGE), f"--limit must be at most {INT64_MAX}, not {HUGE}"),
        (("tickets", "--limit", "0"), "--limit must be at least 1, not 0"),
        (("logs", "--lines", "-5"), "--lines must be at least 0, not -5"),
        (("logs", "--lines", HUGE), f"--lines must be at most {INT64_MAX}, not {HUGE}"),
        (("logs", "--ticket", HUGE), f"--ticket must be at most {INT64_MAX}, not {HUGE}"),
    ],
)
def test_a_count_out_of_range_is_refused_naming_the_option(
    swarmd_env: dict[str, str], home: Path, args: tuple[str, ...], message: str
) -> None:
    result = swarmd_says(*args, env=swarmd_env)

    assert result.returncode == 2
    assert one_sentence(result.stderr) == f"swarmd: {message}"
    assert written(home) == []


@pytest.mark.parametrize("value", [HUGE, f"-{HUGE}", str(INT64_MAX + 1), str(-(2**63) - 1)])
def test_a_priority_out_of_the_64_bit_range_is_refused_and_nothing_is_written(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, value: str
) -> None:
    path = write_ticket(tmp_path, ECHO_TICKET)

    for command in ("submit", "run-ticket"):
        result = swarmd_says(command, str(path), "--priority", value, env=swarmd_env)

        assert result.returncode == 2, result.stderr
        assert "--priority must be" in one_sentence(result.stderr)
    assert written(home) == []


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "-inf"])
def test_run_ticket_with_a_timeout_that_cannot_be_waited_for_writes_nothing(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, value: str
) -> None:
    path = write_ticket(tmp_path, ECHO_TICKET)

    result = swarmd_says("run-ticket", str(path), "--wait", "--timeout", value, env=swarmd_env)

    assert result.returncode == 2
    assert "--timeout must be a number of seconds above zero" in one_sentence(result.stderr)
    assert written(home) == []


def test_a_usage_mistake_typer_finds_is_one_line_with_exit_2(swarmd_env: dict[str, str]) -> None:
    result = swarmd_says("tickets", "--limit", "many", env=swarmd_env)

    assert result.returncode == 2
    message = one_sentence(result.stderr)
    assert "'--limit'" in message
    assert message.endswith("(see swarmd tickets --help)")
