"""Valid ticket files parse into the specs their authors meant, and survive a round trip."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from swarmd.errors import TicketError
from swarmd.models import TaskSpec, TicketSpec
from swarmd.tickets import (
    MAX_TASKS,
    load_ticket_file,
    parse_tasks,
    parse_ticket_data,
    parse_ticket_text,
    ticket_to_data,
    validate_task_graph,
)

EXAMPLES = Path(__file__).parent.parent.parent / "examples"

FULL_TOML = """
title = "Everything"
agent = "writer"
priority = 5
key = "everything-v1"
model = ["anthropic/claude-sonnet-4-5", "openai/gpt-4.1-mini"]

[[tasks]]
name = "draft"
prompt = "Draft it"
model = "minimax/MiniMax-M2"
max_attempts = 2
timeout_seconds = 90.5

[[tasks]]
name = "build"
agent = "command"
needs = ["draft"]
command = ["make", "-C", "{workspace}", "TASK={task}"]
priority = -1

[[tasks]]
name = "verify"
agent = "verify"
needs = ["build"]
checks = [
    {type = "file_exists", path = "site/index.html"},
    {type = "command_succeeds", command = ["python3", "-m", "pytest", "-q"]},
]
"""


def test_hello_example_is_an_offline_dag_of_echo_and_command_tasks() -> None:
    spec = load_ticket_file(EXAMPLES / "hello.toml")
    assert spec.agent == "echo"
    assert [task.name for task in spec.tasks] == ["greet", "reply", "shout", "list"]
    assert spec.tasks[3].agent == "command"
    assert spec.tasks[3].needs == ("reply", "shout")
    assert spec.tasks[3].command is not None
    assert "{workspace}" in spec.tasks[3].command


def test_landing_page_example_matches_the_design() -> None:
    spec = load_ticket_file(EXAMPLES / "landing-page.toml")
    assert spec.title == "Landing page"
    assert spec.agent == "llm"
    assert [(task.name, task.needs) for task in spec.tasks] == [
        ("copy", ()),
        ("html", ("copy",)),
        ("check", ("html",)),
    ]
    assert spec.tasks[2].command == ("python3", "-c", "import html.parser")


def test_every_field_is_read_into_the_spec() -> None:
    spec = parse_ticket_text(FULL_TOML, fmt="toml")
    assert spec == TicketSpec(
        title="Everything",
        agent="writer",
        priority=5,
        key="everything-v1",
        model=("anthropic/claude-sonnet-4-5", "openai/gpt-4.1-mini"),
        tasks=(
            TaskSpec(
                name="draft",
                prompt="Draft it",
                model=("minimax/MiniMax-M2",),
                max_attempts=2,
                timeout_seconds=90.5,
            ),
            TaskSpec(
                name="build",
                agent="command",
                needs=("draft",),
                command=("make", "-C", "{workspace}", "TASK={task}"),
                priority=-1,
                model=("anthropic/claude-sonnet-4-5", "openai/gpt-4.1-mini"),
            ),
            TaskSpec(
                name="verify",
                agent="verify",
                needs=("build",),
                model=("anthropic/claude-sonnet-4-5", "openai/gpt-4.1-mini"),
                checks=(
                    {"type": "file_exists", "path": "site/index.html"},
                    {"type": "command_succeeds", "command": ["python3", "-m", "pytest", "-q"]},
                ),
            ),
        ),
    )


def test_json_and_toml_of_the_same_ticket_give_the_same_spec() -> None:
    from_toml = parse_ticket_text(FULL_TOML, fmt="toml")
    as_json = json.dumps(ticket_to_data(from_toml))
    assert parse_ticket_text(as_json, fmt="json") == from_toml


def test_ticket_model_chain_is_the_default_of_its_tasks() -> None:
    spec = parse_ticket_data(
        {
            "title": "x",
            "model": "openai/a",
            "tasks": [
                {"name": "a", "prompt": "p"},
                {"name": "b", "prompt": "p", "model": "ollama/b"},
            ],
        }
    )
    assert [t.model for t in spec.tasks] == [("openai/a",), ("ollama/b",)]


def test_planned_ticket_gives_its_model_chain_to_the_planner() -> None:
    spec = parse_ticket_data({"plan": True, "prompt": "Build it", "model": ["openai/p"]})
    assert spec.tasks[0].model == ("openai/p",)


def test_default_agent_is_llm() -> None:
    spec = parse_ticket_data({"title": "x", "tasks": [{"name": "a", "prompt": "p"}]})
    assert spec.agent == "llm"
    assert spec.tasks[0].agent is None


def test_integer_timeout_becomes_seconds_as_float() -> None:
    spec = parse_ticket_data(
        {"title": "x", "tasks": [{"name": "a", "prompt": "p", "timeout_seconds": 30}]}
    )
    assert spec.tasks[0].timeout_seconds == 30.0


def test_top_level_prompt_alone_is_a_one_task_ticket_named_main() -> None:
    spec = parse_ticket_text('title = "Poem"\nprompt = "Write a poem"', fmt="toml")
    assert spec.tasks == (TaskSpec(name="main", prompt="Write a poem"),)
    assert spec.prompt is None
    assert not spec.plan


def test_shorthand_title_defaults_to_first_prompt_line_cut_at_80() -> None:
    first_line = "Write " + "very " * 30 + "long"
    spec = parse_ticket_data({"prompt": f"\n  {first_line}\nand a second line"})
    assert spec.title == first_line[:80].rstrip()
    assert len(spec.title) <= 80


GOOD_TICKETS = Path(__file__).parent / "good_tickets"


def test_ticket_of_tasks_without_a_title_takes_its_file_stem() -> None:
    # good_tickets/missing_title.toml was a bad ticket while tickets of tasks needed a title.
    spec = load_ticket_file(GOOD_TICKETS / "missing_title.toml")
    assert spec.title == "missing_title"
    assert spec.tasks == (TaskSpec(name="a", prompt="one"),)


def test_untitled_json_ticket_of_tasks_takes_its_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "landing-2026.json"
    path.write_text(json.dumps({"tasks": [{"name": "a", "agent": "echo", "prompt": "p"}]}))
    assert load_ticket_file(path).title == "landing-2026"


def test_prompt_lends_its_first_line_before_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "ticket.toml"
    path.write_text('prompt = "Write a poem\\nabout tea"\n')
    assert load_ticket_file(path).title == "Write a poem"


def test_file_stem_that_is_no_safe_title_is_escaped(tmp_path: Path) -> None:
    path = tmp_path / "two\nlines\u202e.toml"
    path.write_text('[[tasks]]\nname = "a"\nprompt = "p"\n')
    assert load_ticket_file(path).title == "two\\nlines\\u202e"


def test_file_stem_title_is_cut_to_the_title_limit(tmp_path: Path) -> None:
    path = tmp_path / ("t" * 240 + ".toml")
    path.write_text('[[tasks]]\nname = "a"\nprompt = "p"\n')
    assert load_ticket_file(path).title == "t" * 200


def test_untitled_data_without_a_prompt_or_file_is_untitled() -> None:
    spec = parse_ticket_data({"tasks": [{"name": "a", "prompt": "p"}]})
    assert spec.title == "untitled"


def test_untitled_ticket_survives_a_round_trip(tmp_path: Path) -> None:
    spec = load_ticket_file(GOOD_TICKETS / "missing_title.toml")
    assert parse_ticket_data(ticket_to_data(spec)) == spec


def test_plan_is_stored_as_one_planner_task() -> None:
    spec = parse_ticket_data({"plan": True, "prompt": "Build a blog", "agent": "writer"})
    assert spec.plan
    assert spec.prompt == "Build a blog"
    assert spec.title == "Build a blog"
    assert spec.tasks == (TaskSpec(name="plan", agent="planner", prompt="Build a blog"),)


def test_plan_false_with_prompt_is_the_shorthand() -> None:
    spec = parse_ticket_data({"plan": False, "prompt": "Just this"})
    assert [task.name for task in spec.tasks] == ["main"]


def test_named_agent_may_work_from_a_prompt_alone() -> None:
    spec = parse_ticket_data({"title": "x", "agent": "claude", "prompt": "Fix the bug"})
    assert spec.agent == "claude"


def test_file_without_known_extension_is_read_by_its_content(tmp_path: Path) -> None:
    as_json = tmp_path / "ticket"
    as_json.write_text('{"title": "J", "prompt": "p"}')
    as_toml = tmp_path / "ticket.txt"
    as_toml.write_text('title = "T"\nprompt = "p"\n')
    assert load_ticket_file(as_json).title == "J"
    assert load_ticket_file(as_toml).title == "T"


def test_leading_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b'\xef\xbb\xbftitle = "BOM"\nprompt = "p"\n')
    assert load_ticket_file(path).title == "BOM"


def test_ten_thousand_task_chain_parses_quickly(tmp_path: Path) -> None:
    lines = ['title = "Chain"', 'agent = "echo"']
    for i in range(MAX_TASKS):
        lines += ["[[tasks]]", f'name = "t{i}"', 'prompt = "p"']
        if i:
            lines.append(f'needs = ["t{i - 1}"]')
    path = tmp_path / "chain.toml"
    path.write_text("\n".join(lines))
    started = time.perf_counter()
    spec = load_ticket_file(path)
    elapsed = time.perf_counter() - started
    assert len(spec.tasks) == MAX_TASKS
    assert spec.tasks[-1].needs == (f"t{MAX_TASKS - 2}",)
    # Linear work takes a fraction of a second; a quadratic check would take minutes.
    assert elapsed < 10


@pytest.mark.parametrize(
    "path",
    [EXAMPLES / "hello.toml", EXAMPLES / "landing-page.toml"],
    ids=lambda path: path.name,
)
def test_example_round_trips_through_data(path: Path) -> None:
    spec = load_ticket_file(path)
    assert parse_ticket_data(ticket_to_data(spec)) == spec


def test_full_ticket_round_trips_through_json() -> None:
    spec = parse_ticket_text(FULL_TOML, fmt="toml")
    restored = parse_ticket_data(json.loads(json.dumps(ticket_to_data(spec))))
    assert restored == spec


def test_plan_ticket_round_trips_through_data() -> None:
    spec = parse_ticket_data({"plan": True, "prompt": "Goal", "key": "k1", "priority": 3})
    assert parse_ticket_data(ticket_to_data(spec)) == spec


def test_ticket_data_leaves_out_unset_task_fields() -> None:
    spec = parse_ticket_data({"title": "x", "tasks": [{"name": "a", "prompt": "p"}]})
    assert ticket_to_data(spec)["tasks"] == [{"name": "a", "prompt": "p"}]


def test_planner_tasks_may_need_tasks_already_in_the_ticket() -> None:
    tasks = parse_tasks(
        [{"name": "write", "prompt": "w", "needs": ["plan"]}, {"name": "review", "prompt": "r"}],
        existing=["plan"],
    )
    assert [(task.name, task.needs) for task in tasks] == [("write", ("plan",)), ("review", ())]


def test_planner_task_may_not_reuse_an_existing_name() -> None:
    with pytest.raises(TicketError, match='task "plan" already exists in this ticket'):
        parse_tasks([{"name": "plan", "prompt": "again"}], existing=["plan"], source="plan")


def test_validate_task_graph_names_the_cycle_without_a_source() -> None:
    tasks = [TaskSpec(name="a", needs=("b",)), TaskSpec(name="b", needs=("a",))]
    with pytest.raises(TicketError, match=r"^tasks form a cycle through needs: a -> b -> a$"):
        validate_task_graph(tasks)


def test_diamond_is_not_a_cycle() -> None:
    validate_task_graph(
        [
            TaskSpec(name="top"),
            TaskSpec(name="left", needs=("top",)),
            TaskSpec(name="right", needs=("top",)),
            TaskSpec(name="bottom", needs=("left", "right")),
        ]
    )


def test_tasks_written_out_of_order_come_back_in_dependency_order() -> None:
    spec = parse_ticket_data(
        {
            "title": "Backwards",
            "tasks": [
                {"name": "check", "prompt": "c", "needs": ["html", "copy"]},
                {"name": "html", "prompt": "h", "needs": ["copy"]},
                {"name": "notes", "prompt": "n"},
                {"name": "copy", "prompt": "w"},
            ],
        }
    )
    assert [(task.name, task.needs) for task in spec.tasks] == [
        ("notes", ()),
        ("copy", ()),
        ("html", ("copy",)),
        ("check", ("copy", "html")),
    ]


def test_tasks_already_in_dependency_order_keep_their_written_order() -> None:
    spec = load_ticket_file(EXAMPLES / "hello.toml")
    assert [task.name for task in spec.tasks] == ["greet", "reply", "shout", "list"]
    assert spec.tasks[3].needs == ("reply", "shout")


def test_needs_on_existing_tasks_come_first() -> None:
    tasks = parse_tasks(
        [
            {"name": "review", "prompt": "r", "needs": ["write", "plan"]},
            {"name": "write", "prompt": "w"},
        ],
        existing=["plan"],
    )
    assert [(task.name, task.needs) for task in tasks] == [
        ("write", ()),
        ("review", ("plan", "write")),
    ]
