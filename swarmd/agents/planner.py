"""The planner agent: turns a goal into a task graph, validated by the ticket-file rules.

The model answers with one JSON object::

    {"tasks": [{"name": "copy", "prompt": "...", "needs": []}, ...],
     "checks": [{"type": "file_exists", "path": "index.html"}]}

swarmd adds the final ``verify`` task itself (needing every task nothing else needs, running
the planner's checks). A graph that breaks a rule goes back to the model with the error, up
to ``MAX_PLAN_ROUNDS`` times; the daemon inserts the accepted graph in the same transaction
that closes the planner's attempt.
"""

from __future__ import annotations

import json
from typing import Any

from swarmd.agents.llm import ask_models, describe_result
from swarmd.errors import TicketError
from swarmd.llm import ChainFailedError, RequestRejectedError, strip_reasoning
from swarmd.models import TaskSpec
from swarmd.tickets import PLAN_TASK, VERIFY_AGENT, parse_tasks
from swarmd.wire.channel import WorkerCalls
from swarmd.wire.job import Job
from swarmd.wire.result import AgentResult

MAX_PLAN_ROUNDS = 3
MAX_PLANNED_TASKS = 50
VERIFY_TASK = "verify"


def extract_json_object(text: str) -> Any:
    """The first JSON object in a reply, fenced in a code block or not."""
    start = text.find("{")
    if start < 0:
        raise ValueError("the answer holds no JSON object")
    decoder = json.JSONDecoder()
    try:
        value, _ = decoder.raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        raise ValueError(f"the JSON is invalid: {exc.msg} at character {exc.pos}") from None
    return value


def plan_from_answer(text: str, *, model: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The validated task list (the planner's tasks plus ``verify``), as plain data.

    Tasks that name no model chain inherit ``model``, the planner's own.
    """
    document = extract_json_object(strip_reasoning(text))
    if not isinstance(document, dict) or not isinstance(document.get("tasks"), list):
        raise ValueError('the answer must be an object with a "tasks" array')
    tasks = document["tasks"]
    if not tasks:
        raise ValueError("the plan has no tasks")
    if len(tasks) > MAX_PLANNED_TASKS:
        raise ValueError(f"{len(tasks)} tasks is over the plan's limit of {MAX_PLANNED_TASKS}")
    checks = document.get("checks")
    if not isinstance(checks, list) or not checks:
        raise ValueError('the answer must carry a non-empty "checks" array for the verify task')
    names = [t.get("name") for t in tasks if isinstance(t, dict)]
    needed = {n for t in tasks if isinstance(t, dict) for n in (t.get("needs") or [])}
    sinks = [n for n in names if isinstance(n, str) and n not in needed]
    verify = {"name": VERIFY_TASK, "agent": VERIFY_AGENT, "needs": sinks, "checks": checks}
    specs = parse_tasks(
        [*tasks, verify], default_agent="llm", existing=(PLAN_TASK,), source="the plan"
    )
    return [plan_entry(spec, model) for spec in specs]


def plan_entry(spec: TaskSpec, model: tuple[str, ...]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": spec.name, "agent": spec.agent, "needs": list(spec.needs)}
    if spec.model or model:
        entry["model"] = list(spec.model or model)
    if spec.prompt is not None:
        entry["prompt"] = spec.prompt
    if spec.command is not None:
        entry["command"] = list(spec.command)
    if spec.checks:
        entry["checks"] = [dict(c) for c in spec.checks]
    return entry


async def run_planner(job: Job, calls: WorkerCalls) -> AgentResult:
    goal = job.prompt or ""
    problems: list[str] = []
    tries: list[dict[str, Any]] = []
    for _ in range(MAX_PLAN_ROUNDS):
        prompt = goal
        if problems:
            prompt += (
                "\n\nYour previous plan was refused: "
                + problems[-1]
                + "\nAnswer again with a corrected JSON object."
            )
        try:
            result = await ask_models(job, calls, prompt=prompt)
        except ChainFailedError as exc:
            return AgentResult(
                ok=False, error=str(exc), retryable=not isinstance(exc, RequestRejectedError)
            )
        details = describe_result(result)
        tries.extend(details.pop("tries"))
        try:
            plan = plan_from_answer(result.response.text, model=job.model_chain)
        except (ValueError, TicketError) as exc:
            problems.append(str(exc))
            continue
        (job.records_dir / "plan.json").write_text(json.dumps({"tasks": plan}, indent=2) + "\n")
        return AgentResult(
            ok=True,
            details={**details, "tries": tries, "plan": plan, "plan_rounds": len(problems) + 1},
        )
    return AgentResult(
        ok=False,
        retryable=False,
        error=f"the planner's task graph was refused {len(problems)} times; last: {problems[-1]}",
        details={"tries": tries, "plan_problems": problems},
    )
