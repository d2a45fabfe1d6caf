"""Every malformed ticket in tests/tickets/bad_tickets/ is refused with one sentence naming it."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Literal

import pytest

from swarmd.errors import InputError, TicketError
from swarmd.tickets import (
    MAX_PROMPT_BYTES,
    MAX_TASKS,
    load_ticket_file,
    parse_ticket_data,
    parse_ticket_text,
)

BAD_TICKETS = Path(__file__).parent / "bad_tickets"

EXPECTED = {
    "unknown_task_field.toml": 'task "html": unknown field "promt" (did you mean "prompt"?)',
    "unknown_top_field.json": 'unknown field "titel" (did you mean "title"?)',
    "duplicate_task_names.toml": 'task "a" is defined twice (tasks #1 and #2)',
    "unknown_need.json": 'task "b" needs unknown task "x"',
    "self_need.toml": 'task "a" needs itself',
    "cycle.toml": "tasks form a cycle through needs: a -> c -> b -> a",
    "cycle.json": "tasks form a cycle through needs: x -> y -> x",
    "empty_prompt.toml": 'task "a": field "prompt" is empty',
    "empty_command.json": 'task "check": field "command" is empty',
    "command_agent_without_command.toml": 'task "build": agent "command" needs a "command"',
    "llm_without_prompt.toml": 'task "write": agent "llm" needs a "prompt"',
    "llm_with_command.toml": 'task "write": agent "llm" takes no "command"',
    "priority_is_bool.toml": 'field "priority" must be an integer, not a boolean',
    "priority_is_float.json": 'field "priority" must be an integer, not a decimal number',
    "needs_not_array.json": 'task "b": field "needs" must be an array of task names, not a string',
    "needs_twice.toml": 'task "b": field "needs" lists "a" twice',
    "invalid_toml.toml": "invalid TOML: Illegal character '\\n' (at line 3, column 10)",
    "invalid_json.json": "invalid JSON on line 4, column 1",
    "empty.toml": "the ticket file is empty",
    "whitespace_only.json": "the ticket file is empty",
    "top_level_array.json": "the top level must be a table, not an array",
    "prompt_and_tasks.toml": 'give either a top-level "prompt" or "tasks", not both',
    "plan_without_prompt.toml": 'plan = true needs a "prompt"',
    "plan_with_tasks.json": 'plan = true takes a "prompt" and no "tasks"',
    "no_tasks.toml": 'there are no "tasks"',
    "empty_tasks.json": 'field "tasks" is empty',
    "task_not_table.json": "task #1 must be a table, not a string",
    "task_name_with_dot.toml": 'task #1: field "name" is "a.b": use 1 to 64 letters',
    "task_without_name.json": 'task #2: missing required field "name"',
    "zero_max_attempts.toml": 'task "a": field "max_attempts" must be between 1 and 100',
    "negative_timeout.json": 'task "a": field "timeout_seconds" must be a positive number',
    "infinite_timeout.toml": 'task "a": field "timeout_seconds" must be a positive number',
    "model_without_provider.toml": 'entry "gpt-4.1-mini" must be named provider/model',
    "unknown_check_type.toml": 'field "checks" item 1 has type "file_exist"',
    "check_without_path.toml": '(file_exists): missing required field "path"',
    "checks_on_llm_task.toml": '"checks" are only run by agent "verify", not "llm"',
    "verify_without_checks.json": 'task "v": agent "verify" needs "checks"',
    "named_agent_without_input.toml": 'agent "claude" needs a "prompt" or a "command"',
    "command_item_not_string.toml": 'field "command" item 2 must be a string, not an integer',
    "duplicate_json_key.json": 'invalid JSON: key "title" appears twice',
    "nan_priority.json": "invalid JSON: NaN is not a number JSON allows",
    "lone_surrogate.json": 'field "prompt" is not valid Unicode',
    "multiline_title.json": 'field "title" must be one line',
    "title_is_date.toml": 'field "title" must be a string, not a date',
    "invalid_utf8.toml": "not valid UTF-8 (byte 0xe9 on line 2)",
    "invalid_utf8.json": "not valid UTF-8 (byte 0xff on line 2)",
}


def test_every_bad_ticket_file_has_an_expected_message() -> None:
    on_disk = {path.name for path in BAD_TICKETS.iterdir()}
    assert on_disk == set(EXPECTED)
    assert len(on_disk) >= 25
    assert {path.suffix for path in BAD_TICKETS.iterdir()} == {".toml", ".json"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_ticket_is_refused_naming_the_problem(name: str) -> None:
    path = BAD_TICKETS / name
    with pytest.raises(TicketError) as caught:
        load_ticket_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert EXPECTED[name] in message
    assert "\n" not in message


def test_ticket_error_is_bad_input_with_exit_code_2() -> None:
    with pytest.raises(InputError) as caught:
        load_ticket_file(BAD_TICKETS / "cycle.toml")
    assert caught.value.exit_code == 2


def test_more_than_max_tasks_is_refused() -> None:
    tasks = [{"name": f"t{i}", "prompt": "p"} for i in range(MAX_TASKS + 1)]
    with pytest.raises(TicketError, match="10,001 tasks is over the limit of 10,000"):
        parse_ticket_data({"title": "Too many", "tasks": tasks})


def test_prompt_over_one_megabyte_is_refused() -> None:
    prompt = "é" * (MAX_PROMPT_BYTES // 2 + 1)  # two bytes each in UTF-8
    with pytest.raises(TicketError, match=r'task "a": field "prompt" is 1,000,002 bytes'):
        parse_ticket_data({"title": "Big", "tasks": [{"name": "a", "prompt": prompt}]})


def test_prompt_of_exactly_one_megabyte_is_accepted() -> None:
    spec = parse_ticket_data({"title": "Big", "prompt": "x" * MAX_PROMPT_BYTES})
    assert spec.tasks[0].prompt is not None
    assert len(spec.tasks[0].prompt) == MAX_PROMPT_BYTES


def test_missing_file_is_refused_as_unreadable(tmp_path: Path) -> None:
    with pytest.raises(TicketError, match="cannot read the ticket file: No such file"):
        load_ticket_file(tmp_path / "absent.toml")


def test_directory_is_refused_as_unreadable(tmp_path: Path) -> None:
    with pytest.raises(TicketError, match="cannot read the ticket file: Is a directory"):
        load_ticket_file(tmp_path)


def test_ten_thousand_task_cycle_is_named_without_recursion(tmp_path: Path) -> None:
    tasks = [
        {"name": f"t{i}", "prompt": "p", "needs": [f"t{(i + 1) % MAX_TASKS}"]}
        for i in range(MAX_TASKS)
    ]
    path = tmp_path / "ring.json"
    path.write_text(json.dumps({"title": "Ring", "tasks": tasks}))
    with pytest.raises(TicketError) as caught:
        load_ticket_file(path)
    assert "tasks form a cycle through needs: t0 -> t1 -> t2" in str(caught.value)
    assert "(10,000 tasks)" in str(caught.value)


def test_unknown_field_of_a_task_without_a_valid_name_names_its_position() -> None:
    with pytest.raises(TicketError, match=r"task #1: field \"name\" must be a string"):
        parse_ticket_data({"title": "x", "tasks": [{"name": 7, "prompt": "p"}]})


def test_source_defaults_to_a_placeholder_for_data() -> None:
    with pytest.raises(TicketError, match=r"^<ticket>: there are no \"tasks\""):
        parse_ticket_data({"title": "x"})


# -- hostile files and values ----------------------------------------------------------------


@pytest.mark.timeout(10)
def test_fifo_is_refused_at_once_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "ticket.toml"
    os.mkfifo(fifo)
    with pytest.raises(TicketError, match="cannot read the ticket file: Is a FIFO"):
        load_ticket_file(fifo)


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/dev/zero", "a character device"), ("/dev/null", "a character device")],
)
def test_device_is_refused_without_reading_it(path: str, kind: str) -> None:
    with pytest.raises(TicketError, match=f"Is {kind}, not a regular file"):
        load_ticket_file(Path(path))


def test_unix_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        with pytest.raises(TicketError, match="Is a socket, not a regular file"):
            load_ticket_file(path)


def test_symlink_to_a_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "ticket.toml"
    link.symlink_to("/dev/zero")
    with pytest.raises(TicketError, match="Is a character device"):
        load_ticket_file(link)


def test_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "sparse.json"
    with path.open("wb") as file:
        file.truncate(64 * 2**30)  # sparse: 64 GiB declared, nothing on disk
    with pytest.raises(TicketError, match="larger than 16 MiB"):
        load_ticket_file(path)


def test_path_with_a_bidi_override_is_quoted_in_the_message(tmp_path: Path) -> None:
    path = tmp_path / "evil\u202egnp.json"
    path.write_text("{")
    with pytest.raises(TicketError) as caught:
        load_ticket_file(path)
    message = str(caught.value)
    assert "\u202e" not in message
    assert message.startswith('"') and "evil\\u202egnp.json" in message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"title": "t", "prompt": "a\0b"}, 'field "prompt" holds a NUL character (U+0000)'),
        (
            {"title": "t", "tasks": [{"name": "a", "prompt": "x\0"}]},
            'task "a": field "prompt" holds a NUL character',
        ),
        (
            {"title": "t", "tasks": [{"name": "a", "agent": "command", "command": ["x", "\0"]}]},
            'field "command" item 2 holds a NUL character',
        ),
        ({"title": "t\0", "prompt": "p"}, 'field "title" must be one line'),
        ({"title": "t", "key": "k\x9b", "prompt": "p"}, 'field "key" must be one line'),
        ({"title": "a\u202eb", "prompt": "p"}, 'field "title" holds U+202E'),
        ({"title": "a\u200bb", "prompt": "p"}, 'field "title" holds U+200B'),
        ({"title": "a\u2028b", "prompt": "p"}, 'field "title" must be one line'),
        ({"title": "t", "prompt": "p", "model": "a/b\0"}, 'entry "a/b\\u0000" must be one line'),
        ({"title": "t", "prompt": "p", "model": "a/b\u202e"}, "must be one line of plain text"),
        (
            {"title": "t", "tasks": [{"name": "a", "prompt": "p", "timeout_seconds": 10**400}]},
            'field "timeout_seconds" must be a positive number of seconds, at most 31,536,000',
        ),
        (
            {"title": "t", "tasks": [{"name": "a", "prompt": "p", "timeout_seconds": 1e308}]},
            "at most 31,536,000",
        ),
    ],
    ids=[
        "nul-in-prompt",
        "nul-in-task-prompt",
        "nul-in-argv",
        "nul-in-title",
        "c1-control-in-key",
        "bidi-override-in-title",
        "zero-width-space-in-title",
        "line-separator-in-title",
        "nul-in-model",
        "bidi-in-model",
        "huge-integer-timeout",
        "huge-float-timeout",
    ],
)
def test_hostile_value_is_refused_at_submit(data: dict[str, object], expected: str) -> None:
    with pytest.raises(TicketError) as caught:
        parse_ticket_data(data)
    assert expected in str(caught.value)


def test_emoji_joined_by_zero_width_joiners_is_a_fine_title() -> None:
    title = "Family \U0001f468\u200d\U0001f469\u200d\U0001f467 page"
    assert parse_ticket_data({"title": title, "prompt": "p"}).title == title


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("ev\u202eil", '"ev\\u202eil"'),
        ("zero\u200bwidth", '"zero\\u200bwidth"'),
        ("bell\x07", '"bell\\u0007"'),
        ("x" * 5000, '"' + "x" * 80 + '…"'),
    ],
    ids=["bidi-override", "zero-width", "control", "long"],
)
def test_hostile_task_name_is_quoted_safely(name: str, shown: str) -> None:
    with pytest.raises(TicketError) as caught:
        parse_ticket_data({"title": "t", "tasks": [{"name": name, "prompt": "p"}]})
    message = str(caught.value)
    assert f'field "name" is {shown}:' in message
    assert name not in message


def test_unknown_need_of_a_megabyte_is_shortened_in_the_message() -> None:
    need = "n" * 1_000_000
    with pytest.raises(TicketError) as caught:
        parse_ticket_data({"title": "t", "tasks": [{"name": "a", "prompt": "p", "needs": [need]}]})
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    ("text", "fmt", "expected"),
    [
        ('{"title": "t", "prompt": "p", "priority": ' + "9" * 5000 + "}", "json", "too large"),
        ('title = "t"\nprompt = "p"\npriority = ' + "9" * 5000, "toml", "too long to read"),
        ('title = "t"\nprompt = "p"\npriority = 18446744073709551616', "toml", "between"),
        ('{"title": "t", "prompt": "p", "priority": 18446744073709551616}', "json", "between"),
    ],
    ids=["json-5000-digits", "toml-5000-digits", "toml-2**64", "json-2**64"],
)
def test_huge_integer_is_a_clear_error(
    text: str, fmt: Literal["toml", "json"], expected: str
) -> None:
    with pytest.raises(TicketError, match=expected):
        parse_ticket_text(text, fmt=fmt)


def test_json_of_millions_of_tables_is_refused_mid_parse() -> None:
    text = '{"title": "t", "tasks": [' + ",".join(["{}"] * 2_000_000) + "]}"
    with pytest.raises(TicketError, match="more than 41,000 tables"):
        parse_ticket_text(text, fmt="json")
