"""Answers at their limits, end to end: cut at the token limit, and read from a prompt cache.

``swarmd run-ticket FILE --wait`` against the loopback fake provider, taught here to answer as
a model stopped by ``max_tokens`` does (OpenAI's ``finish_reason: "length"``, Anthropic's
``stop_reason: "max_tokens"``) and to report Anthropic's prompt-cache usage. The outcome is
read back as a user reads it: ``swarmd show --json``, the store, the log.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swarmd.models import ExitReason, TaskState
from tests.support.cli import attempts_of, log_events, swarmd, tasks_of
from tests.support.fake_llm import FakeLLMServer, Fault
from tests.support.fake_server import _write
from tests.support.faults import answer_body
from tests.support.llm_env import (
    FALLBACK,
    FALLBACK_WIRE,
    PRIMARY,
    PRIMARY_WIRE,
    archive_member,
    llm_ticket,
    provider_env,
    run_ticket,
)

CUT = "cut"  # a Fault kind: answer ``text`` as a model stopped by its token limit
CUT_IN_FILE = '<file path="answer.md">\nThe first half of the pa'
WHOLE = '<file path="answer.md">\nThe whole page\n</file>\n'


class LimitedLLMServer(FakeLLMServer):
    """The fake provider, which can also answer cut at the token limit (``Fault(kind=CUT)``)
    and adds ``cache_usage`` to the usage of every Anthropic answer."""

    def __init__(self) -> None:
        super().__init__()
        self.cache_usage: dict[str, int] = {}

    async def _write_fault(
        self,
        writer: asyncio.StreamWriter,
        fault: Fault,
        flavour: str,
        request: Any,
        payload: Any,
    ) -> bool:
        if fault.kind not in ("ok", CUT):
            return await super()._write_fault(writer, fault, flavour, request, payload)
        body = answer_body(flavour, fault, payload, 1)
        if flavour == "anthropic":
            body["usage"].update(self.cache_usage)
            if fault.kind == CUT:
                body["stop_reason"] = "max_tokens"
        elif fault.kind == CUT:
            body["choices"][0]["finish_reason"] = "length"
        await _write(writer, 200, json.dumps(body).encode(), dict(fault.headers))
        return True


@pytest.fixture
def limited_llm() -> Iterator[LimitedLLMServer]:
    with LimitedLLMServer() as server:
        yield server


@pytest.fixture
def env(offline_env: dict[str, str], limited_llm: LimitedLLMServer) -> dict[str, str]:
    return {**offline_env, **provider_env(limited_llm)}


def shown_attempts(home: Path, env: dict[str, str], task: str) -> list[dict[str, Any]]:
    """The attempts of ``task`` of ticket 1, as ``swarmd show 1 --json`` prints them."""
    result = swarmd("show", "1", "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = json.loads(result.stdout)
    (entry,) = [t for t in shown["tasks"] if t["name"] == task]
    attempts: list[dict[str, Any]] = shown["attempts"][str(entry["id"])]
    return attempts


def test_answer_cut_inside_a_file_fails_its_attempt_and_the_next_answers_whole(
    tmp_path: Path, env: dict[str, str], home: Path, limited_llm: LimitedLLMServer
) -> None:
    limited_llm.script(PRIMARY_WIRE, Fault(kind=CUT, text=CUT_IN_FILE), default=Fault.ok(WHOLE))

    result = run_ticket(tmp_path, env, llm_ticket("landing"))

    assert result.returncode == 0, result.stdout + result.stderr
    (task,) = tasks_of(home, 1)
    assert task.state is TaskState.SUCCEEDED
    cut, whole = attempts_of(home, task.id)
    assert cut.error is not None
    assert "stopped at its token limit" in cut.error
    assert 'inside the file block "answer.md"' in cut.error
    assert whole.exit_reason is ExitReason.OK
    archive = home / "outputs" / "1" / "landing.tar.gz"
    assert archive_member(archive, "files/answer.md") == "The whole page"
    shown_cut, shown_whole = shown_attempts(home, env, "landing")
    assert shown_cut["result"]["truncated"] is True
    assert shown_cut["result"]["finish_reason"] == "length"
    assert shown_cut["result"]["model"] == PRIMARY
    assert "truncated" not in shown_whole["result"]


def test_anthropic_answer_cut_at_max_tokens_is_retried_until_whole(
    tmp_path: Path, env: dict[str, str], home: Path, limited_llm: LimitedLLMServer
) -> None:
    limited_llm.script(FALLBACK_WIRE, Fault(kind=CUT, text=CUT_IN_FILE), default=Fault.ok(WHOLE))

    result = run_ticket(tmp_path, env, llm_ticket("landing", model=[FALLBACK]))

    assert result.returncode == 0, result.stdout + result.stderr
    shown_cut, shown_whole = shown_attempts(home, env, "landing")
    assert (shown_cut["result"]["truncated"], shown_cut["result"]["finish_reason"]) == (
        True,
        "max_tokens",
    )
    assert shown_whole["result"]["model"] == FALLBACK
    archive = home / "outputs" / "1" / "landing.tar.gz"
    assert archive_member(archive, "files/answer.md") == "The whole page"


def test_answer_cut_after_its_last_file_is_kept_and_marked_truncated(
    tmp_path: Path, env: dict[str, str], home: Path, limited_llm: LimitedLLMServer
) -> None:
    limited_llm.script(PRIMARY_WIRE, default=Fault(kind=CUT, text=WHOLE + "Next, I would"))

    result = run_ticket(tmp_path, env, llm_ticket("landing"))

    assert result.returncode == 0, result.stdout + result.stderr
    (only,) = shown_attempts(home, env, "landing")
    assert only["result"]["truncated"] is True
    assert only["result"]["files_written"] == ["answer.md"]


def test_model_that_always_cuts_its_file_leaves_the_task_dead_naming_the_cut(
    tmp_path: Path, env: dict[str, str], home: Path, limited_llm: LimitedLLMServer
) -> None:
    limited_llm.script(PRIMARY_WIRE, default=Fault(kind=CUT, text=CUT_IN_FILE))
    env = {**env, "SWARMD_MAX_ATTEMPTS": "2"}

    result = run_ticket(tmp_path, env, llm_ticket("landing"))

    assert result.returncode == 1, result.stdout + result.stderr
    (task,) = tasks_of(home, 1)
    assert task.state is TaskState.DEAD
    assert len(attempts_of(home, task.id)) == 2
    assert "stopped at its token limit" in (task.last_error or "")
    assert "Traceback" not in result.stdout + result.stderr


def test_cut_attempt_ends_with_exit_reason_truncated(
    tmp_path: Path, env: dict[str, str], home: Path, limited_llm: LimitedLLMServer
) -> None:
    limited_llm.script(PRIMARY_WIRE, Fault(kind=CUT, text=CUT_IN_FILE), default=Fault.ok(WHOLE))

    result = run_ticket(tmp_path, env, llm_ticket("landing"))

    assert result.returncode == 0, result.stdout + result.stderr
    (task,) = tasks_of(home, 1)
    cut, _ = attempts_of(home, task.id)
    finished = [e for e in log_events(home) if e.get("event") == "attempt_finished"]
    assert [e["exit_reason"] for e in finished] == ["truncated", "ok"]
    assert cut.exit_reason is ExitReason.TRUNCATED


def test_anthropic_prompt_cache_tokens_count_and_cost_in_show(
    tmp_path: Path, env: dict[str, str], home: Path, limited_llm: LimitedLLMServer
) -> None:
    limited_llm.cache_usage = {"cache_creation_input_tokens": 1000, "cache_read_input_tokens": 4000}
    env = {**env, "SWARMD_MODEL_PRICES": json.dumps({FALLBACK: [3.0, 15.0]})}

    result = run_ticket(tmp_path, env, llm_ticket("landing", model=[FALLBACK]))

    assert result.returncode == 0, result.stdout + result.stderr
    (only,) = shown_attempts(home, env, "landing")
    usage = only["result"]["usage"]
    assert usage["cache_creation_input_tokens"] == 1000
    assert usage["cache_read_input_tokens"] == 4000
    uncached = usage["prompt_tokens"] - 5000
    assert uncached > 0
    expected = (uncached + 1000 * 1.25 + 4000 * 0.1) * 3.0 + usage["completion_tokens"] * 15.0
    assert only["result"]["cost_usd"] == pytest.approx(expected / 1e6)
    (finished,) = [e for e in log_events(home) if e.get("event") == "attempt_finished"]
    assert finished["tokens"] == usage
