"""Every malformed ticket in tests/tickets/bad_tickets/ is refused with one sentence naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swarmd.errors import InputError, TicketError
from swarmd.tickets import MAX_PROMPT_BYTES, MAX_TASKS, load_ticket_file, parse_ticket_data

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
    "missing_title.toml": 'missing required field "title"',
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
    with pytest.raises(TicketError, match=r"^<ticket>: missing required field \"title\""):
        parse_ticket_data({"tasks": [{"name": "a", "prompt": "p"}]})
