"""Planned tickets end to end: a goal becomes a task graph, runs, verifies, and is delivered."""

from __future__ import annotations

import json
from pathlib import Path

from swarmd.models import TaskState, TicketState
from swarmd.outputs import read_archive_manifest, verify_archive
from tests.support.cli import attempts_of, tasks_of, ticket_of
from tests.support.fake_llm import FakeLLMServer, Fault
from tests.support.llm_env import run_ticket

PLANNER_WIRE = "planner-model"
WORKER_MODEL = "openai/worker-model"

GRAPH = {
    "tasks": [
        {"name": "outline", "prompt": "Outline the site", "model": WORKER_MODEL},
        {"name": "copy", "prompt": "Write the copy", "needs": ["outline"], "model": WORKER_MODEL},
        {"name": "style", "prompt": "Write the CSS", "needs": ["outline"], "model": WORKER_MODEL},
        {
            "name": "html",
            "prompt": "Write the page",
            "needs": ["copy", "style"],
            "model": WORKER_MODEL,
        },
        {
            "name": "notes",
            "prompt": "Write release notes",
            "needs": ["html"],
            "model": WORKER_MODEL,
        },
    ],
    "checks": [
        {"type": "file_exists", "path": "answer.md"},
        {"type": "file_exists", "path": "index.html"},
    ],
}
FIX = '<file path="index.html">\n<h1>fixed</h1>\n</file>\n'


def planned_ticket() -> dict[str, object]:
    return {
        "title": "site",
        "plan": True,
        "prompt": "Build a small site",
        "model": f"openai/{PLANNER_WIRE}",
    }


def test_a_planned_ticket_runs_its_graph_and_a_fix_round_makes_verify_pass(
    tmp_path: Path, llm_env: dict[str, str], home: Path, fake_llm: FakeLLMServer
) -> None:
    fake_llm.script(PLANNER_WIRE, Fault.ok(json.dumps(GRAPH)), Fault.ok(FIX))

    result = run_ticket(tmp_path, llm_env, planned_ticket())

    assert result.returncode == 0, result.stdout + result.stderr
    tasks = {t.name: t for t in tasks_of(home, 1)}
    assert set(tasks) == {"plan", "outline", "copy", "style", "html", "notes", "verify"}
    assert {t.state for t in tasks.values()} == {TaskState.SUCCEEDED}
    assert tasks["outline"].needs == ("plan",)
    assert tasks["verify"].needs == ("notes",)
    verify = attempts_of(home, tasks["verify"].id)[-1].result or {}
    assert len(verify["fix_rounds"]) == 1
    assert all(check["ok"] for check in verify["checks"])
    delivery = home / "outputs" / "1" / "delivery.tar.gz"
    assert verify_archive(delivery) == []
    manifest = read_archive_manifest(delivery)
    paths = {entry["path"] for entry in manifest["files"]}
    assert {"plan.json", "answer.md", "index.html", "verify-report.txt"} <= paths
    assert str(delivery) in result.stdout


def test_an_invalid_plan_goes_back_to_the_planner_with_its_error(
    tmp_path: Path, llm_env: dict[str, str], home: Path, fake_llm: FakeLLMServer
) -> None:
    cyclic = {
        "tasks": [
            {"name": "a", "prompt": "x", "needs": ["b"]},
            {"name": "b", "prompt": "y", "needs": ["a"]},
        ],
        "checks": GRAPH["checks"],
    }
    good = {
        "tasks": [{"name": "only", "prompt": "x", "model": WORKER_MODEL}],
        "checks": [{"type": "file_exists", "path": "answer.md"}],
    }
    fake_llm.script(PLANNER_WIRE, Fault.ok(json.dumps(cyclic)), Fault.ok(json.dumps(good)))

    result = run_ticket(tmp_path, llm_env, planned_ticket())

    assert result.returncode == 0, result.stdout + result.stderr
    second_prompt = json.dumps(fake_llm.requests(PLANNER_WIRE)[1].body)
    assert "cycle" in second_prompt
    plan = attempts_of(home, tasks_of(home, 1)[0].id)[-1].result or {}
    assert plan["plan_rounds"] == 2


def test_a_planner_that_never_writes_a_valid_graph_fails_the_ticket_clearly(
    tmp_path: Path, llm_env: dict[str, str], home: Path, fake_llm: FakeLLMServer
) -> None:
    fake_llm.script(PLANNER_WIRE, default=Fault.ok("I would rather write a poem."))

    result = run_ticket(tmp_path, llm_env, planned_ticket())

    assert result.returncode == 1
    assert ticket_of(home, 1).state is TicketState.FAILED
    [plan] = tasks_of(home, 1)
    assert plan.state is TaskState.DEAD
    assert plan.last_error is not None and "refused 3 times" in plan.last_error
    assert fake_llm.count(PLANNER_WIRE) == 3
