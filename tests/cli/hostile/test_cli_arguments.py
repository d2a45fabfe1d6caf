"""Hostile command-line arguments, unusable homes, and the log as a way in.

The cases marked ``xfail(strict=True)`` are known failures whose fix belongs to files outside
this suite's reach (the CLI, its commands, the log viewer, the daemon): whoever fixes one
sees its test pass, and removes the mark (its ``fix`` below).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.hostile import (
    BAD_INPUT,
    ENVIRONMENT,
    Batch,
    Outcome,
    Sandbox,
    assert_clean,
    assert_refused,
    batch_fixture,
    nothing_queued,
    queue_ticket,
)

PAST_INT64 = str(2**64)
TICKET = '{"title": "t", "prompt": "p", "agent": "echo"}'

Check = Callable[[Sandbox, Outcome], None]


@dataclass(frozen=True)
class Case:
    run: Callable[[Sandbox], Outcome]
    check: Check
    fix: str | None = None  # where the fix belongs, for a case that fails today


def refused(code: int, *fragments: str, queued: bool = True) -> Check:
    def check(box: Sandbox, outcome: Outcome) -> None:
        assert_refused(outcome, code, *fragments)
        if not queued:
            assert nothing_queued(box.home)

    return check


def with_ticket(*args: str) -> Callable[[Sandbox], Outcome]:
    """Run ``args`` after one ticket is queued (so id 1 exists); "{ticket}" is its file."""

    def run(box: Sandbox) -> Outcome:
        path = box.write("ticket.json", TICKET)
        queue_ticket(box.home, TICKET)
        return box.run(*(str(path) if arg == "{ticket}" else arg for arg in args))

    return run


def fresh(*args: str) -> Callable[[Sandbox], Outcome]:
    """Run ``args`` on an empty home; "{ticket}" is a valid ticket file."""

    def run(box: Sandbox) -> Outcome:
        path = box.write("ticket.json", TICKET)
        return box.run(*(str(path) if arg == "{ticket}" else arg for arg in args))

    return run


# -- arguments ---------------------------------------------------------------------------------

OVERFLOW = (
    "cli.py: integers past 64 bits reach SQLite (or a C ssize_t) and raise OverflowError; "
    "parse_ticket_id and the integer options must refuse them as bad input (exit 2)"
)
TIMEOUT = (
    "cli.py/commands.run_ticket: --timeout must be a positive finite number, checked before "
    "the ticket is submitted; today -1, 0 and nan submit the ticket, stop it and exit 1"
)
NEGATIVE = "cli.py: --limit and --lines accept negative numbers (SQLite reads LIMIT -5 as all)"

CASES: dict[str, Case] = {
    "show-word": Case(with_ticket("show", "abc"), refused(BAD_INPUT, "'abc' is not a ticket")),
    "show-zero": Case(with_ticket("show", "0"), refused(BAD_INPUT, "'0' is not a ticket id")),
    "show-hex": Case(with_ticket("show", "0x10"), refused(BAD_INPUT, "'0x10' is not a ticket")),
    "show-bidi": Case(with_ticket("show", "\u202e1"), refused(BAD_INPUT, "'\\u202e1' is not")),
    "show-unknown": Case(with_ticket("show", "99"), refused(BAD_INPUT, "there is no ticket 99")),
    "cancel-empty-task": Case(with_ticket("cancel", "1."), refused(BAD_INPUT, "TICKET.TASK")),
    "cancel-unknown-task": Case(
        with_ticket("cancel", "1.nope"), refused(BAD_INPUT, "has no task named 'nope'")
    ),
    "tickets-escape-state": Case(
        with_ticket("tickets", "--state", "\x1b[2J"), refused(BAD_INPUT, "'\\x1b[2J'")
    ),
    "logs-bidi-level": Case(
        with_ticket("logs", "--level", "\u202ex"), refused(BAD_INPUT, "'\\u202ex'")
    ),
    **{
        f"past-64-bits-{name}": Case(with_ticket(*args), refused(BAD_INPUT), fix=None)
        for name, args in {
            "show": ("show", PAST_INT64),
            "cancel": ("cancel", PAST_INT64),
            "retry": ("retry", PAST_INT64),
            "cancel-task": ("cancel", f"{PAST_INT64}.main"),
            "run-ticket": ("run-ticket", PAST_INT64),
            "tickets-limit": ("tickets", "--limit", PAST_INT64),
            "logs-lines": ("logs", "--lines", PAST_INT64),
        }.items()
    },
    "past-64-bits-submit-priority": Case(
        fresh("submit", "{ticket}", "--priority", PAST_INT64),
        refused(BAD_INPUT, queued=False),
        fix=None,
    ),
    **{
        f"run-ticket-timeout-{value}": Case(
            fresh("run-ticket", "{ticket}", "--timeout", value),
            refused(BAD_INPUT, queued=False),
            fix=None,
        )
        for value in ("-1", "0", "nan")
    },
    "tickets-negative-limit": Case(fresh("tickets", "--limit", "-5"), refused(BAD_INPUT), fix=None),
    "logs-negative-lines": Case(fresh("logs", "--lines", "-5"), refused(BAD_INPUT), fix=None),
    "run-ticket-superscript-digit": Case(
        fresh("run-ticket", "²"),
        refused(BAD_INPUT),
        fix=None,
    ),
}

# -- unusable homes ------------------------------------------------------------------------------


def _home_is_a_file(box: Sandbox) -> str:
    box.home.write_text("not a directory")
    return str(box.home)


def _home_under_a_file(box: Sandbox) -> str:
    box.home.write_text("not a directory")
    return str(box.home / "sub")


def _home_in_proc(box: Sandbox) -> str:
    return "/proc/swarmd-hostile-home"  # nobody may create anything there, root included


HOMES: dict[str, Callable[[Sandbox], str]] = {
    "file": _home_is_a_file,
    "under-a-file": _home_under_a_file,
    "in-proc": _home_in_proc,
}
HOME_FIX = (
    "cli.py/logs.py/daemon.py: an unusable home must be exit 3 with one sentence before "
    "logging is configured or the lock is taken; today it ends in a NotADirectoryError or "
    "FileNotFoundError traceback with exit 1"
)


def in_home(home: str, *args: str) -> Callable[[Sandbox], Outcome]:
    def run(box: Sandbox) -> Outcome:
        path = box.write("ticket.json", TICKET)
        env = box.env(SWARMD_HOME=HOMES[home](box))
        return box.run(*(str(path) if arg == "{ticket}" else arg for arg in args), env=env)

    return run


def doctor_finding(box: Sandbox, outcome: Outcome) -> None:
    assert outcome.returncode != 0, outcome.describe()
    assert_clean(outcome)


COMMANDS = {
    "tickets": ("tickets",),
    "show": ("show", "1"),
    "status": ("status",),
    "submit": ("submit", "{ticket}"),
    "run-ticket": ("run-ticket", "{ticket}"),
    "run": ("run",),
}
HOME_CASES = {
    # home: the commands tried on it, and those that already answer with exit 3
    "file": (("tickets", "show", "status", "submit", "run-ticket", "run"), {"tickets", "show"}),
    "under-a-file": (("tickets", "submit"), {"tickets"}),
    "in-proc": (("submit", "run-ticket"), {"submit", "run-ticket"}),
}


def finds_nothing(code: int, said: str) -> Check:
    """A command that only reads, on a home that cannot exist: it says there is nothing."""

    def check(box: Sandbox, outcome: Outcome) -> None:
        assert outcome.returncode == code, outcome.describe()
        assert said in outcome.stdout, outcome.describe()
        assert_clean(outcome)

    return check


CASES["home-in-proc-tickets"] = Case(in_home("in-proc", "tickets"), finds_nothing(0, "no tickets"))
CASES["home-in-proc-status"] = Case(in_home("in-proc", "status"), finds_nothing(3, "none yet"))

for _home, (_commands, _working) in HOME_CASES.items():
    for _command in _commands:
        CASES[f"home-{_home}-{_command}"] = Case(
            in_home(_home, *COMMANDS[_command]),
            refused(ENVIRONMENT),
            fix=None,
        )
for _home in ("file", "in-proc"):
    CASES[f"home-{_home}-doctor"] = Case(
        in_home(_home, "doctor"),
        doctor_finding,
        fix=None,
    )

# -- the log as a way in ---------------------------------------------------------------------------


def with_log(data: bytes | None, *args: str) -> Callable[[Sandbox], Outcome]:
    def run(box: Sandbox) -> Outcome:
        (box.home / "logs").mkdir(parents=True)
        log = box.home / "logs" / "swarmd.jsonl"
        if data is None:
            os.mkfifo(log)
        else:
            log.write_bytes(data)
        return box.run(*args, timeout=3)

    return run


def no_terminal_escapes(box: Sandbox, outcome: Outcome) -> None:
    assert outcome.returncode == 0, outcome.describe()
    assert "\x1b" not in outcome.output and "\x07" not in outcome.output


def read_through(box: Sandbox, outcome: Outcome) -> None:
    assert outcome.returncode == 0, outcome.describe()
    assert_clean(outcome)


CASES["logs-terminal-escapes"] = Case(
    with_log(b'{"event": "x\\u001b]0;pwned\\u0007\\u001b[2J", "level": "info"}\n', "logs"),
    no_terminal_escapes,
    fix=None,
)
CASES["logs-fifo"] = Case(
    with_log(None, "logs"),
    refused(BAD_INPUT),
    fix=None,
)
CASES["logs-garbage"] = Case(
    with_log(
        b'\xff\xfe garbage\n[1, 2]\n"text"\nnull\n{"event": {"nested": 1}, "level": 5}\n'
        + b"{" * 100_000
        + b"\n",
        "logs",
    ),
    read_through,
)


# -- the agent registry ------------------------------------------------------------------------


def with_agents_file(target: str | None) -> Callable[[Sandbox], Outcome]:
    def run(box: Sandbox) -> Outcome:
        path = box.inputs / "agents.toml"
        if target is None:
            os.mkfifo(path)
        else:
            path.symlink_to(target)
        env = box.env(SWARMD_AGENTS_FILE=str(path))
        ticket = box.write("ticket.json", TICKET)
        return box.run("submit", str(ticket), env=env, timeout=5, memory_limit_mb=512)

    return run


REGISTRY_FIX = (
    "agents/registry.py: the registry is read with a blocking, unbounded open; a FIFO hangs "
    "every command, /dev/zero ends in MemoryError. Open with O_NONBLOCK, refuse what is not a "
    "regular file, bound the read (ConfigError, exit 78)"
)
CASES["agents-file-fifo"] = Case(with_agents_file(None), refused(78), fix=None)
CASES["agents-file-dev-zero"] = Case(with_agents_file("/dev/zero"), refused(78), fix=None)


def _params() -> Iterator[Any]:
    for name in sorted(CASES):
        fix = CASES[name].fix
        marks = [pytest.mark.xfail(strict=True, reason=f"fix in {fix}")] if fix else []
        yield pytest.param(name, id=name, marks=marks)


cli_cases = batch_fixture("cli_cases", {name: case.run for name, case in CASES.items()})


@pytest.mark.parametrize("case", list(_params()))
def test_hostile_argument_or_home(cli_cases: Batch, case: str) -> None:
    box, outcome = cli_cases.outcome(case)
    CASES[case].check(box, outcome)


# A read-only home is tested in tests/cli/test_unusable_home.py, as a user that root is not.
