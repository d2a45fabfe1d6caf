"""The command agent with real processes: its stdout, its reply, its usage, its environment."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from swarmd.agents.command import run_command
from swarmd.agents.stdout import MAX_STDOUT_BYTES, TAIL_BYTES
from swarmd.outputs import write_reply_files
from swarmd.wire.agent import AgentDef, AgentKind, ReplyMode, UsageFormat
from swarmd.wire.job import Job
from swarmd.wire.report import llm_usage
from tests.support import standin_claude, standin_codex

SUPPORT = Path(__file__).resolve().parents[1] / "support"
CLAUDE = (sys.executable, str(SUPPORT / "standin_claude.py"))
CODEX = (sys.executable, str(SUPPORT / "standin_codex.py"))
WORKER_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/var/lib/swarmd"}


def command_job(
    workspace: Path,
    argv: tuple[str, ...],
    *,
    agent: AgentDef | None = None,
    prompt: str = "hello",
    granted_env: dict[str, str] | None = None,
    prices: dict[str, tuple[float, float]] | None = None,
) -> Job:
    workspace.mkdir(exist_ok=True)
    return Job(
        ticket_id=7,
        task_id=1,
        task="t",
        attempt=1,
        agent=agent or AgentDef(name="command", kind=AgentKind.COMMAND),
        workspace=str(workspace),
        archive_path=str(workspace.parent / "t.tar.gz"),
        deadline=time.time() + 60,
        prompt=prompt,
        command=argv,
        granted_env=granted_env or {},
        prices=prices or {},
    )


def named(
    usage: UsageFormat | None = None,
    reply: ReplyMode = ReplyMode.TEXT,
    model: tuple[str, ...] | None = None,
) -> AgentDef:
    return AgentDef(name="cli", kind=AgentKind.COMMAND, usage=usage, reply=reply, model=model)


def python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


async def test_stdout_is_kept_as_stdout_txt_and_stderr_is_not(tmp_path: Path) -> None:
    job = command_job(
        tmp_path / "ws",
        python("import sys; print('the answer'); print('a warning', file=sys.stderr)"),
    )

    result = await run_command(job, WORKER_ENV)

    assert result.ok, result.error
    assert (tmp_path / "ws" / "stdout.txt").read_text() == "the answer\n"
    assert result.details["stdout_bytes"] == len("the answer\n")


async def test_a_silent_command_leaves_no_stdout_txt_not_even_an_inherited_one(
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "stdout.txt").write_text("an upstream task's stdout\n")

    result = await run_command(command_job(workspace, ("true",)), WORKER_ENV)

    assert result.ok, result.error
    assert not (workspace / "stdout.txt").exists()


async def test_stdout_over_the_cap_keeps_its_start_and_end_around_a_marker_line(
    tmp_path: Path,
) -> None:
    lines = 1_000_000  # "line 0000000\n" is 13 bytes: 13 MB in all
    job = command_job(
        tmp_path / "ws",
        python(f"import sys\nsys.stdout.writelines(f'line {{i:07}}\\n' for i in range({lines}))"),
    )

    result = await run_command(job, WORKER_ENV)

    assert result.ok, result.error
    kept = (tmp_path / "ws" / "stdout.txt").read_bytes()
    total = 13 * lines
    cut = total - MAX_STDOUT_BYTES
    head, marker, tail = kept.partition(b"\n[swarmd: stdout cut here: ")
    assert head.startswith(b"line 0000000\nline 0000001\n")
    assert len(head) == MAX_STDOUT_BYTES - TAIL_BYTES
    assert marker
    marker_line, _, tail = tail.partition(b"\n")
    assert f"{cut:,} bytes left out".encode() in marker_line
    assert len(tail) == TAIL_BYTES
    assert tail.endswith(f"line {lines - 1:07}\n".encode())
    assert result.details["stdout_bytes"] == total
    assert result.details["stdout_cut_bytes"] == cut


async def test_reply_files_writes_the_blocks_of_stdout_as_an_llm_reply_and_keeps_stdout(
    tmp_path: Path,
) -> None:
    reply = (
        '<file path="site/index.html">\n<h1>hi</h1>\n</file>\n'
        '<file path="../escape.txt">\nno\n</file>\n'
    )
    job = command_job(
        tmp_path / "ws",
        python(f"print({reply!r}, end='')"),
        agent=named(reply=ReplyMode.FILES),
    )

    result = await run_command(job, WORKER_ENV)

    assert result.ok, result.error
    workspace = tmp_path / "ws"
    assert (workspace / "site" / "index.html").read_text() == "<h1>hi</h1>"
    assert not (tmp_path / "escape.txt").exists()
    assert (workspace / "stdout.txt").read_text() == reply
    reference = tmp_path / "reference"
    reference.mkdir()
    expected = write_reply_files(reference, reply)
    assert result.details["files_written"] == expected.written == ["site/index.html"]
    assert result.details["refused"] == [
        {"path": r.path, "reason": r.reason} for r in expected.refused
    ]


async def test_without_reply_files_the_blocks_of_stdout_stay_text(tmp_path: Path) -> None:
    job = command_job(
        tmp_path / "ws", python("print('<file path=\"a.txt\">\\nx\\n</file>')"), agent=named()
    )

    result = await run_command(job, WORKER_ENV)

    assert result.ok, result.error
    assert not (tmp_path / "ws" / "a.txt").exists()
    assert "files_written" not in result.details


async def test_claude_json_reports_model_tokens_and_cost_as_an_llm_task_does(
    tmp_path: Path,
) -> None:
    job = command_job(
        tmp_path / "ws",
        (*CLAUDE, "-p", "{prompt}", "--output-format", "json"),
        agent=named(usage=UsageFormat.CLAUDE_JSON),
        prompt="write the notes",
    )

    result = await run_command(job, WORKER_ENV)

    assert result.ok, result.error
    prompt_tokens = (
        standin_claude.INPUT_TOKENS
        + standin_claude.CACHE_WRITE_TOKENS
        + standin_claude.CACHE_READ_TOKENS
    )
    model = f"anthropic/{standin_claude.MODEL}"
    assert result.details["model"] == model
    assert result.details["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": standin_claude.OUTPUT_TOKENS,
    }
    assert result.details["cost_usd"] == standin_claude.COST_USD
    [(counted_model, usage)] = list(llm_usage(result.details))
    assert counted_model == model
    assert usage.prompt_tokens == prompt_tokens
    assert usage.cost_usd == standin_claude.COST_USD
    workspace = tmp_path / "ws"
    assert (workspace / "response.md").read_text() == standin_claude.answer_for("write the notes")
    assert json.loads((workspace / "stdout.txt").read_text())["type"] == "result"
    assert not (workspace / "notes").exists()


async def test_claude_json_with_reply_files_writes_the_blocks_of_its_answer(
    tmp_path: Path,
) -> None:
    job = command_job(
        tmp_path / "ws",
        (*CLAUDE, "-p", "{prompt}", "--output-format", "json"),
        agent=named(usage=UsageFormat.CLAUDE_JSON, reply=ReplyMode.FILES),
        prompt="write the notes",
    )

    result = await run_command(job, WORKER_ENV)

    assert result.ok, result.error
    workspace = tmp_path / "ws"
    assert (workspace / "notes" / "answer.md").read_text() == "write the notes"
    assert (workspace / "response.md").read_text() == standin_claude.answer_for("write the notes")
    assert result.details["files_written"] == ["notes/answer.md"]


async def test_codex_json_reports_its_turn_tokens_priced_for_the_declared_model(
    tmp_path: Path,
) -> None:
    job = command_job(
        tmp_path / "ws",
        (*CODEX, "exec", "--json", "{prompt}"),
        agent=named(
            usage=UsageFormat.CODEX_JSON, reply=ReplyMode.FILES, model=("openai/gpt-5-codex",)
        ),
        prompt="write the notes",
        prices={"openai/gpt-5-codex": (1.25, 10.0)},
    )

    result = await run_command(job, WORKER_ENV)

    assert result.ok, result.error
    assert result.details["model"] == "openai/gpt-5-codex"
    assert result.details["usage"] == {
        "prompt_tokens": standin_codex.INPUT_TOKENS,
        "completion_tokens": standin_codex.OUTPUT_TOKENS,
    }
    expected_cost = (standin_codex.INPUT_TOKENS * 1.25 + standin_codex.OUTPUT_TOKENS * 10.0) / 1e6
    assert result.details["cost_usd"] == pytest.approx(expected_cost)
    workspace = tmp_path / "ws"
    assert (workspace / "notes" / "answer.md").read_text() == "write the notes"
    assert (workspace / "response.md").read_text() == standin_codex.answer_for("write the notes")


async def test_codex_json_with_no_declared_model_or_price_counts_tokens_at_no_cost(
    tmp_path: Path,
) -> None:
    job = command_job(
        tmp_path / "ws",
        (*CODEX, "exec", "--json", "{prompt}"),
        agent=named(usage=UsageFormat.CODEX_JSON),
    )

    result = await run_command(job, WORKER_ENV)

    assert result.ok, result.error
    assert result.details["model"] == "openai/unknown"
    assert result.details["cost_usd"] is None
    [(_, usage)] = list(llm_usage(result.details))
    assert usage.completion_tokens == standin_codex.OUTPUT_TOKENS


async def test_stdout_not_in_the_usage_format_is_one_sentence_and_the_task_still_succeeds(
    tmp_path: Path,
) -> None:
    job = command_job(
        tmp_path / "ws",
        (*CLAUDE, "-p", "{prompt}"),  # --output-format json forgotten
        agent=named(usage=UsageFormat.CLAUDE_JSON, reply=ReplyMode.FILES),
        prompt="write the notes",
    )

    result = await run_command(job, WORKER_ENV)

    assert result.ok, result.error
    assert result.details["usage_error"] == (
        "stdout holds no claude result object (is --output-format json set?)"
    )
    assert "usage" not in result.details
    # With no answer to read, the reply is stdout itself.
    assert (tmp_path / "ws" / "notes" / "answer.md").read_text() == "write the notes"


async def test_a_failed_command_still_reports_the_tokens_it_spent(tmp_path: Path) -> None:
    job = command_job(
        tmp_path / "ws",
        (*CLAUDE, "-p", "{prompt}", "--output-format", "json", "--exit", "1"),
        agent=named(usage=UsageFormat.CLAUDE_JSON, reply=ReplyMode.FILES),
    )

    result = await run_command(job, WORKER_ENV)

    assert not result.ok
    assert result.error == f"command {CLAUDE[0]!r} failed with exit code 1"
    assert result.details["usage"]["completion_tokens"] == standin_claude.OUTPUT_TOKENS
    assert not (tmp_path / "ws" / "notes").exists()


async def test_the_command_sees_the_base_environment_its_grants_and_nothing_else(
    tmp_path: Path,
) -> None:
    worker_env = {
        **WORKER_ENV,
        "LANG": "C.UTF-8",
        "LC_TIME": "en_GB.UTF-8",
        "TZ": "UTC",
        "TMPDIR": "/tmp",
        "USER": "swarmd",
        "LOGNAME": "swarmd",
        "SHELL": "/bin/sh",
        "TERM": "dumb",
        "PYTHONPATH": "/opt/swarmd/lib",
        "SWARMD_HOME": "/var/lib/swarmd",
        "DATABASE_URL": "postgres://db",
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "WATCHDOG_USEC": "30000000",
    }
    job = command_job(
        tmp_path / "ws",
        ("/usr/bin/env",),
        granted_env={"DATABASE_URL": "postgres://db", "ANTHROPIC_API_KEY": "sk-granted"},
    )

    result = await run_command(job, worker_env)

    assert result.ok, result.error
    seen = dict(
        line.split("=", 1) for line in (tmp_path / "ws" / "stdout.txt").read_text().splitlines()
    )
    assert seen == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/var/lib/swarmd",
        "LANG": "C.UTF-8",
        "LC_TIME": "en_GB.UTF-8",
        "TZ": "UTC",
        "TMPDIR": "/tmp",
        "USER": "swarmd",
        "LOGNAME": "swarmd",
        "SHELL": "/bin/sh",
        "TERM": "dumb",
        "DATABASE_URL": "postgres://db",
        "ANTHROPIC_API_KEY": "sk-granted",
        "SWARMD_TASK": "t",
        "SWARMD_TICKET": "7",
    }


async def test_a_command_that_cannot_start_is_one_sentence_and_not_retried(
    tmp_path: Path,
) -> None:
    job = command_job(tmp_path / "ws", ("/nonexistent/agent-cli", "-p", "x"))

    result = await run_command(job, WORKER_ENV)

    assert not result.ok and not result.retryable
    assert result.error == "cannot run '/nonexistent/agent-cli': No such file or directory"
