"""The verify agent: deterministic checks over the workspace, and the fix loop.

Checks (declared in the ticket or written by the planner)::

    {type = "file_exists", path = "site/index.html"}
    {type = "command_succeeds", command = ["python3", "-m", "pytest", "-q"]}
    {type = "tests_pass", command = ["python3", "-m", "pytest", "-q"]}  # repository tickets
    {type = "git_clean"}                                                # repository tickets

When a check fails and fix rounds remain (``SWARMD_MAX_FIX_ROUNDS``), a fix step asks the
model chain to repair the workspace, given the failing checks' output and the files, and the
checks run again. Fixed files land in this task's archive, which the delivery merges last.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from swarmd.wire.channel import WorkerCalls
from swarmd.wire.job import Job
from swarmd.wire.result import AgentResult

OUTPUT_TAIL_CHARS = 4000
MAX_FIX_CONTEXT_CHARS = 64 * 1024

FIX_SYSTEM_PROMPT = """\
You repair work that failed its checks. Answer with a <file path="relative/path">content</file>
block for every file you create or change; files you do not mention are kept as they are."""


async def run_check(
    check: Mapping[str, Any], workspace: Path, env: Mapping[str, str]
) -> dict[str, Any]:
    kind = check.get("type")
    if kind == "file_exists":
        path = str(check.get("path", ""))
        target = workspace / path
        ok = target.is_file() and not target.is_symlink()
        return {
            "check": f"file_exists {path}",
            "ok": ok,
            "output": "" if ok else f"{path} is missing",
        }
    if kind == "git_clean":
        return await _git_clean(workspace, env)
    if kind in ("command_succeeds", "tests_pass"):
        argv = [str(a) for a in check.get("command", [])]
        label = f"{kind} {' '.join(argv)}"
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=workspace,
                env=dict(env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as exc:
            return {
                "check": label,
                "ok": False,
                "output": f"cannot run {argv[0]!r}: {exc.strerror}",
            }
        out, _ = await proc.communicate()
        text = out.decode("utf-8", "replace")[-OUTPUT_TAIL_CHARS:]
        return {"check": label, "ok": proc.returncode == 0, "output": text}
    return {"check": str(kind), "ok": False, "output": f"unknown check type {kind!r}"}


async def _git_clean(workspace: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """Nothing uncommitted in the worktree (untracked files included; ignored ones not)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "git",
            "status",
            "--porcelain",
            cwd=workspace,
            env={**env, "GIT_OPTIONAL_LOCKS": "0"},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as exc:
        return {"check": "git_clean", "ok": False, "output": f"cannot run git: {exc.strerror}"}
    out, _ = await proc.communicate()
    text = out.decode("utf-8", "replace")[-OUTPUT_TAIL_CHARS:]
    if proc.returncode != 0:
        return {"check": "git_clean", "ok": False, "output": f"not a repository task: {text}"}
    return {"check": "git_clean", "ok": not text.strip(), "output": text}


async def run_checks(job: Job, env: Mapping[str, str]) -> list[dict[str, Any]]:
    workspace = Path(job.workspace)
    return [await run_check(check, workspace, env) for check in job.checks]


def fix_prompt(job: Job, failed: Sequence[Mapping[str, Any]]) -> str:
    from swarmd.outputs.paths import walk_files

    parts = ["These checks failed:"]
    parts += [f"- {r['check']}\n{r['output']}".rstrip() for r in failed]
    parts.append("\nThe files of the work:")
    budget = MAX_FIX_CONTEXT_CHARS
    for path, file in walk_files(Path(job.workspace)):
        if path in ("response.md", "verify-report.txt"):
            continue
        data = file.read()
        try:
            # Decoded as ``Path.read_text(encoding="utf-8")`` would: universal newlines.
            text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").read()
        except UnicodeDecodeError:
            parts.append(f'<file path="{path}"> (binary, {len(data)} bytes) </file>')
            continue
        shown = text[: max(budget, 0)]
        budget -= len(shown)
        parts.append(f'<file path="{path}">\n{shown}\n</file>')
    parts.append("\nFix the work so every check passes.")
    return "\n".join(parts)


async def fix_workspace(
    job: Job, calls: WorkerCalls, failed: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """One fix step: ask the model chain, write the files it answers with."""
    from swarmd.agents.llm import ask_models, describe_result
    from swarmd.llm import ChainFailedError
    from swarmd.outputs import write_reply_files

    try:
        result = await ask_models(
            job, calls, prompt=fix_prompt(job, failed), system=FIX_SYSTEM_PROMPT
        )
    except ChainFailedError as exc:
        return {"ok": False, "error": str(exc)}
    report = write_reply_files(Path(job.workspace), result.response.full_text)
    return {"ok": True, **describe_result(result), "files_written": list(report.written)}


async def run_verify(job: Job, calls: WorkerCalls, env: Mapping[str, str]) -> AgentResult:
    results = await run_checks(job, env)
    rounds: list[dict[str, Any]] = []
    while any(not r["ok"] for r in results) and len(rounds) < job.fix_rounds and job.llm:
        failed = [r for r in results if not r["ok"]]
        fix = await fix_workspace(job, calls, failed)
        rounds.append({"failed": [r["check"] for r in failed], **fix})
        if not fix["ok"]:
            break
        results = await run_checks(job, env)
    failed = [r for r in results if not r["ok"]]
    report = "\n".join(f"{'ok  ' if r['ok'] else 'FAIL'} {r['check']}" for r in results)
    if rounds:
        report += f"\n({len(rounds)} fix round(s))"
    (job.records_dir / "verify-report.txt").write_text(report + "\n", encoding="utf-8")
    details: dict[str, Any] = {"checks": results, "fix_rounds": rounds}
    if failed:
        return AgentResult(
            ok=False,
            error=(
                f"{len(failed)} of {len(results)} checks failed after {len(rounds)} "
                f"fix round(s); first: {failed[0]['check']}"
            ),
            details=details,
        )
    return AgentResult(ok=True, details=details)
