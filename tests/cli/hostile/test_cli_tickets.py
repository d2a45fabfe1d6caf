"""Hostile ticket files through ``swarmd submit`` (and ``run-ticket``): refused at once with
exit 2 and one sentence, nothing queued, nothing written outside the home."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.hostile import (
    BAD_INPUT,
    Batch,
    Outcome,
    Sandbox,
    assert_clean,
    assert_refused,
    batch_fixture,
    nothing_queued,
)

MiB = 2**20


def prompt_ticket(prompt: str = "p", **fields: Any) -> dict[str, Any]:
    return {"title": "t", "prompt": prompt, **fields}


def task_ticket(**task: Any) -> dict[str, Any]:
    return {"title": "t", "tasks": [{"name": "a", "prompt": "p", **task}]}


# -- files that are not ticket files -----------------------------------------------------------


def _fifo(box: Sandbox) -> Path:
    path = box.inputs / "ticket.toml"
    os.mkfifo(path)
    return path


def _socket(box: Sandbox) -> Path:
    path = box.inputs / "ticket.json"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.close()  # the socket file stays
    return path


def _link(target: str) -> Callable[[Sandbox], Path]:
    def make(box: Sandbox) -> Path:
        path = box.inputs / "ticket.toml"
        path.symlink_to(target)
        return path

    return make


def _loop(box: Sandbox) -> Path:
    path = box.inputs / "loop.toml"
    path.symlink_to(path)
    return path


def _sparse(box: Sandbox) -> Path:
    path = box.inputs / "huge.json"
    with path.open("wb") as file:
        file.truncate(17 * MiB)
    return path


NOT_TICKET_FILES: dict[str, tuple[Callable[[Sandbox], Path], str]] = {
    "fifo": (_fifo, "Is a FIFO, not a regular file"),
    "directory": (lambda box: box.inputs, "Is a directory, not a regular file"),
    "dev-zero": (lambda box: Path("/dev/zero"), "Is a character device, not a regular file"),
    "dev-null": (lambda box: Path("/dev/null"), "Is a character device, not a regular file"),
    "unix-socket": (_socket, "Is a socket, not a regular file"),
    "symlink-to-dev-zero": (_link("/dev/zero"), "Is a character device"),
    "symlink-loop": (_loop, "Too many levels of symbolic links"),
    "dangling-symlink": (_link("/nonexistent/ticket.toml"), "No such file or directory"),
    "missing-file": (lambda box: box.inputs / "absent.toml", "No such file or directory"),
    "sparse-17-mib": (_sparse, "the ticket file is larger than 16 MiB"),
    "empty-file": (lambda box: box.write("empty.toml", b""), "the ticket file is empty"),
    "random-bytes": (
        lambda box: box.write("noise.json", bytes(range(256)) * 64),
        "not valid UTF-8",
    ),
    "utf16-with-bom": (
        lambda box: box.write("utf16.json", '{"title": "t"}'.encode("utf-16")),
        "not valid UTF-8",
    ),
    "path-with-newline": (
        lambda box: box.write("bad\nname.json", b"{"),
        'bad\\nname.json": invalid JSON',
    ),
    "path-with-bidi-override": (
        lambda box: box.write("evil\u202egnp.json", b"{"),
        'evil\\u202egnp.json": invalid JSON',
    ),
}


def _submit_file(case: str) -> Callable[[Sandbox], Outcome]:
    return lambda box: box.run("submit", str(NOT_TICKET_FILES[case][0](box)), timeout=15)


not_ticket_files = batch_fixture(
    "not_ticket_files", {case: _submit_file(case) for case in NOT_TICKET_FILES}
)


@pytest.mark.parametrize("case", sorted(NOT_TICKET_FILES))
def test_submit_refuses_what_is_not_a_ticket_file_at_once(
    not_ticket_files: Batch, case: str
) -> None:
    box, outcome = not_ticket_files.outcome(case)
    assert_refused(outcome, BAD_INPUT, NOT_TICKET_FILES[case][1])
    assert outcome.seconds < 10
    assert nothing_queued(box.home)


# -- ticket files with hostile values ----------------------------------------------------------

HOSTILE_TICKETS: dict[str, tuple[str | bytes, str]] = {
    "nested-json-100k": ("[" * 100_000 + "]" * 100_000, "invalid JSON: nested too deeply"),
    "nested-toml-100k": ("x = " + "[" * 100_000 + "]" * 100_000, "invalid TOML"),
    "json-integer-5000-digits": (
        '{"title": "t", "prompt": "p", "priority": ' + "9" * 5000 + "}",
        "too large",
    ),
    "toml-integer-5000-digits": (
        'title = "t"\nprompt = "p"\npriority = ' + "9" * 5000,
        "too long to read",
    ),
    "priority-2**64": (json.dumps(prompt_ticket(priority=2**64)), 'field "priority" must be'),
    "priority-below-int64": (json.dumps(prompt_ticket(priority=-(2**63) - 1)), "must be between"),
    "timeout-1e309": (
        '{"title": "t", "tasks": [{"name": "a", "prompt": "p", "timeout_seconds": 1e309}]}',
        "at most 31,536,000",
    ),
    "timeout-nan": (
        '{"title": "t", "tasks": [{"name": "a", "prompt": "p", "timeout_seconds": NaN}]}',
        "NaN is not a number JSON allows",
    ),
    "timeout-10**400": (json.dumps(task_ticket(timeout_seconds=10**400)), "is too large"),
    "timeout-10**30": (json.dumps(task_ticket(timeout_seconds=10**30)), "at most 31,536,000"),
    "max-attempts-2**64": (json.dumps(task_ticket(max_attempts=2**64)), "between 1 and 100"),
    "nul-in-prompt": (json.dumps(prompt_ticket("before\0after")), "holds a NUL character"),
    "nul-in-task-prompt": (json.dumps(task_ticket(prompt="x\0")), "holds a NUL character"),
    "nul-in-command": (
        json.dumps(task_ticket(agent="command", prompt=None, command=["echo", "a\0b"])),
        'field "command" item 2 holds a NUL character',
    ),
    "nul-in-title": (json.dumps({"title": "a\0b", "prompt": "p"}), "must be one line"),
    "nul-in-task-name": (
        json.dumps({"title": "t", "tasks": [{"name": "a\0b", "prompt": "p"}]}),
        'field "name" is "a\\u0000b"',
    ),
    "nul-in-needs": (json.dumps(task_ticket(needs=["x\0"])), 'needs unknown task "x\\u0000"'),
    "nul-in-model": (json.dumps(prompt_ticket(model="a/b\0")), 'entry "a/b\\u0000"'),
    "nul-in-key": (json.dumps(prompt_ticket(key="k\0")), 'field "key" must be one line'),
    "lone-surrogate-in-prompt": ('{"title": "t", "prompt": "\\ud800"}', "not valid Unicode"),
    "lone-surrogate-in-name": (
        '{"title": "t", "tasks": [{"name": "\\udcff", "prompt": "p"}]}',
        "not valid Unicode",
    ),
    "bidi-override-in-task-name": (
        json.dumps({"title": "t", "tasks": [{"name": "a\u202eb", "prompt": "p"}]}),
        'field "name" is "a\\u202eb"',
    ),
    "zero-width-in-task-name": (
        json.dumps({"title": "t", "tasks": [{"name": "a\u200bb", "prompt": "p"}]}),
        'field "name" is "a\\u200bb"',
    ),
    "ansi-escape-in-task-name": (
        json.dumps({"title": "t", "tasks": [{"name": "\x1b[2J", "prompt": "p"}]}),
        'field "name" is "\\u001b[2J"',
    ),
    "megabyte-task-name": (
        json.dumps({"title": "t", "tasks": [{"name": "n" * MiB, "prompt": "p"}]}),
        '…": use 1 to 64 letters',
    ),
    "bidi-override-in-title": (
        json.dumps({"title": "invoice\u202efdp.exe", "prompt": "p"}),
        'field "title" holds U+202E',
    ),
    "ansi-escape-in-title": (
        json.dumps({"title": "\x1b]0;pwned\x07", "prompt": "p"}),
        'field "title" must be one line',
    ),
    "c1-control-in-title": (json.dumps({"title": "a\x9bb", "prompt": "p"}), "must be one line"),
    "newline-in-key": (json.dumps(prompt_ticket(key="a\nb")), 'field "key" must be one line'),
    "bidi-in-model": (json.dumps(prompt_ticket(model="a/b\u202e")), "must be one line of plain"),
    "bidi-in-unknown-field": (json.dumps(prompt_ticket(**{"x\u202e": 1})), '"x\\u202e"'),
    "too-many-tasks": (
        json.dumps(
            {"title": "t", "tasks": [{"name": f"t{i}", "prompt": "p"} for i in range(10_001)]}
        ),
        "10,001 tasks is over the limit of 10,000",
    ),
    "prompt-over-1-mb": (json.dumps(prompt_ticket("p" * 1_000_001)), "over the limit of 1,000,000"),
    "megabyte-unknown-need": (
        json.dumps(task_ticket(needs=["z" * MiB])),
        'needs unknown task "zzzz',
    ),
    "duplicate-json-key": ('{"title": "a", "title": "b", "prompt": "p"}', "appears twice"),
    "top-level-array": ("[1, 2, 3]", "the top level must be a table, not an array"),
    "check-path-climbing-out": (
        json.dumps(
            task_ticket(
                agent="verify",
                prompt=None,
                checks=[{"type": "file_exists", "path": "../../etc/passwd"}],
            )
        ),
        'must be relative to the workspace, without ".."',
    ),
    "check-path-absolute": (
        json.dumps(
            task_ticket(
                agent="verify", prompt=None, checks=[{"type": "file_exists", "path": "/etc/passwd"}]
            )
        ),
        "must be relative to the workspace",
    ),
    "check-command-nul": (
        json.dumps(
            task_ticket(
                agent="verify",
                prompt=None,
                checks=[{"type": "command_succeeds", "command": ["x\0"]}],
            )
        ),
        "holds a NUL character",
    ),
    "cycle-through-every-task": (
        json.dumps(
            {
                "title": "t",
                "tasks": [
                    {"name": f"t{i}", "prompt": "p", "needs": [f"t{(i + 1) % 5000}"]}
                    for i in range(5000)
                ],
            }
        ),
        "tasks form a cycle through needs: t0 -> t1",
    ),
}


def _submit_text(case: str) -> Callable[[Sandbox], Outcome]:
    name = "ticket.toml" if "toml" in case else "ticket.json"
    return lambda box: box.run("submit", str(box.write(name, HOSTILE_TICKETS[case][0])))


hostile_tickets = batch_fixture(
    "hostile_tickets", {case: _submit_text(case) for case in HOSTILE_TICKETS}
)


@pytest.mark.parametrize("case", sorted(HOSTILE_TICKETS))
def test_submit_refuses_a_hostile_ticket_with_one_sentence(
    hostile_tickets: Batch, case: str
) -> None:
    box, outcome = hostile_tickets.outcome(case)
    sentence = assert_refused(outcome, BAD_INPUT, HOSTILE_TICKETS[case][1])
    assert len(sentence) < 600
    assert nothing_queued(box.home)


def test_sixteen_mib_of_empty_tables_is_refused_in_bounded_memory(sandbox: Sandbox) -> None:
    path = sandbox.write("tables.json", "[" + "{}," * (16 * MiB // 3 - 1) + "{}]")
    outcome = sandbox.run("submit", str(path), memory_limit_mb=1024)
    assert_refused(outcome, BAD_INPUT, "more than 41,000 tables")
    assert outcome.peak_mb is not None and outcome.peak_mb < 400, outcome.peak_mb
    assert nothing_queued(sandbox.home)


def test_run_ticket_refuses_a_fifo_before_anything_runs(sandbox: Sandbox) -> None:
    outcome = sandbox.run("run-ticket", str(_fifo(sandbox)), "--wait", timeout=15)
    assert_refused(outcome, BAD_INPUT, "Is a FIFO, not a regular file")
    assert nothing_queued(sandbox.home)


def test_prompt_with_shell_and_terminal_metacharacters_runs_as_data(sandbox: Sandbox) -> None:
    # Not refused: quotes, $(...), escapes and bidi text are a prompt's business. The command
    # agent receives it as one argument, never through a shell.
    prompt = "$(touch pwned) `id` ; rm -rf ~ \x1b[2J \u202e \" ' \\ " + "\u200b"
    path = sandbox.ticket(
        {
            "title": "t",
            "tasks": [
                {
                    "name": "a",
                    "agent": "command",
                    "command": ["python3", "-c", "import sys; print(len(sys.argv[1]))", "{prompt}"],
                    "prompt": prompt,
                }
            ],
        }
    )
    outcome = sandbox.run("run-ticket", str(path), "--wait", timeout=60)
    assert outcome.returncode == 0, outcome.describe()
    assert_clean(outcome)
    assert not (sandbox.cwd / "pwned").exists()
    assert "\x1b" not in outcome.output
