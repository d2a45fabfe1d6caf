"""The llm agent's report of an answer: its usage with the prompt cache, and a cut at the
token limit, which fails the attempt when it fell inside a file block."""

from __future__ import annotations

import time
from pathlib import Path

from swarmd.agents.llm import describe_result, keep_answer
from swarmd.llm.types import ChatResponse, ModelTry, RouterResult
from swarmd.models import ExitReason
from swarmd.wire.agent import AgentDef, AgentKind
from swarmd.wire.job import Job
from swarmd.wire.report import UsageTotals, llm_usage
from swarmd.wire.result import AgentResult

MODEL = "openai/gpt-x"


def llm_job(workspace: Path) -> Job:
    workspace.mkdir(exist_ok=True)
    return Job(
        ticket_id=3,
        task_id=1,
        task="page",
        attempt=1,
        agent=AgentDef(name="llm", kind=AgentKind.LLM, max_tokens=256),
        workspace=str(workspace),
        archive_path=str(workspace.parent / "page.tar.gz"),
        deadline=time.time() + 60,
        prompt="Write the page",
        model_chain=(MODEL,),
    )


def answered(
    text: str, finish: str = "stop", *, truncated: bool = False, **usage: int
) -> RouterResult:
    response = ChatResponse(
        model=MODEL,
        text=text,
        prompt_tokens=usage.pop("prompt_tokens", 10),
        completion_tokens=usage.pop("completion_tokens", 5),
        latency_s=0.25,
        raw_finish_reason=finish,
        truncated=truncated,
        **usage,
    )
    return RouterResult(response, (ModelTry(MODEL, "ok", 200, None, 0.25),), cost_usd=None)


CUT_REPLY = '<file path="a.md">\nwhole\n</file>\n<file path="index.html">\n<html><bo'


def test_answer_cut_inside_a_file_block_fails_as_truncated(tmp_path: Path) -> None:
    job = llm_job(tmp_path / "work")

    result = keep_answer(job, answered(CUT_REPLY, "length", truncated=True))

    assert not result.ok
    assert result.retryable
    assert result.reason is ExitReason.TRUNCATED
    assert result.error == (
        'openai/gpt-x stopped at its token limit (max_tokens 256, finish reason "length") '
        'inside the file block "index.html", which is cut short; '
        "a named agent's max_tokens in agents.toml raises the limit"
    )
    assert result.details["truncated"] is True
    assert result.details["finish_reason"] == "length"
    assert result.details["files_written"] == ["a.md"]
    assert (tmp_path / "work" / "response.md").read_text() == CUT_REPLY


def test_answer_cut_after_its_last_block_is_kept_and_marked_truncated(tmp_path: Path) -> None:
    reply = '<file path="a.md">\nwhole\n</file>\nAnd now, to explain what I did in detai'

    result = keep_answer(llm_job(tmp_path / "w"), answered(reply, "max_tokens", truncated=True))

    assert result.ok
    assert result.reason is None
    assert (result.details["truncated"], result.details["finish_reason"]) == (True, "max_tokens")
    assert result.details["files_written"] == ["a.md"]


def test_whole_answer_says_nothing_of_a_cut(tmp_path: Path) -> None:
    result = keep_answer(llm_job(tmp_path / "w"), answered('<file path="a.md">\nx\n</file>'))

    assert result.ok
    assert "truncated" not in result.details
    assert "finish_reason" not in result.details


def test_block_left_open_in_a_whole_answer_is_refused_not_failed(tmp_path: Path) -> None:
    # The model chose to stop there: the block is refused as never closing, as before.
    result = keep_answer(llm_job(tmp_path / "w"), answered('<file path="a.md">\nhalf'))

    assert result.ok
    assert result.details["refused"] == [
        {"path": "a.md", "reason": 'file block "a.md" never closes'}
    ]


def test_cut_inside_reasoning_is_no_cut_file(tmp_path: Path) -> None:
    reply = '<think>I will write <file path="a.md">'

    result = keep_answer(llm_job(tmp_path / "w"), answered(reply, "length", truncated=True))

    assert result.ok
    assert result.details["truncated"] is True


def test_truncated_reason_survives_the_channel() -> None:
    sent = AgentResult(ok=False, error="cut", reason=ExitReason.TRUNCATED).to_message()

    read = AgentResult.from_message(sent)

    assert sent["reason"] == "truncated"
    assert read.reason is ExitReason.TRUNCATED
    assert read.exit_reason is ExitReason.TRUNCATED


def test_worker_cannot_claim_a_reason_that_is_the_daemons() -> None:
    for claimed in ("interrupted", "cancelled", "ok", "timeout", "bogus", 7, None):
        read = AgentResult.from_message({"type": "result", "ok": False, "reason": claimed})
        assert read.reason is None
        assert read.exit_reason is ExitReason.ERROR


def test_result_of_an_older_worker_without_a_reason_is_an_error() -> None:
    read = AgentResult.from_message({"type": "result", "ok": False, "error": "x"})
    assert read.exit_reason is ExitReason.ERROR


def test_usage_shows_the_cache_split_and_counts_it_in_the_prompt() -> None:
    result = answered(
        "done",
        prompt_tokens=5012,
        completion_tokens=50,
        cache_creation_tokens=1000,
        cache_read_tokens=4000,
    )

    usage = describe_result(result)["usage"]

    assert usage == {
        "prompt_tokens": 5012,
        "completion_tokens": 50,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 4000,
    }


def test_usage_without_a_cache_has_no_cache_keys() -> None:
    assert describe_result(answered("done"))["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
    }


def test_report_readers_sum_prompts_with_their_cached_tokens() -> None:
    cached = describe_result(
        answered("x", prompt_tokens=5012, cache_creation_tokens=1000, cache_read_tokens=4000)
    )
    plain = describe_result(answered("y", prompt_tokens=8))

    [(model, usage)] = list(llm_usage(cached))
    totals = UsageTotals.from_results([cached, plain])

    assert (model, usage.prompt_tokens) == (MODEL, 5012)
    assert totals.total.prompt_tokens == 5020
    assert totals.total.completion_tokens == 10
