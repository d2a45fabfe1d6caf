"""The command agent: runs an argv in the workspace, so any command-line agent can do a task.

Placeholders ``{prompt}``, ``{workspace}``, ``{task}`` and ``{ticket}`` are replaced inside
each argument. The command inherits the worker's stdout and stderr (the attempt's log file)
and its process group, so the daemon's signals reach it too.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping

from swarmd.wire.job import Job
from swarmd.wire.result import AgentResult


def expand_command(argv: tuple[str, ...], job: Job) -> list[str]:
    values = {
        "{prompt}": job.prompt or "",
        "{workspace}": job.workspace,
        "{task}": job.task,
        "{ticket}": str(job.ticket_id),
    }
    expanded = []
    for arg in argv:
        text = arg
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        expanded.append(text)
    return expanded


async def run_command(job: Job, base_env: Mapping[str, str]) -> AgentResult:
    argv = job.command or job.agent.command
    if not argv:
        return AgentResult(ok=False, error="the command agent has no command", retryable=False)
    env = {
        **base_env,
        **job.granted_env,
        "SWARMD_TASK": job.task,
        "SWARMD_TICKET": str(job.ticket_id),
    }
    try:
        proc = await asyncio.create_subprocess_exec(
            *expand_command(argv, job), cwd=job.workspace, env=env, stdin=asyncio.subprocess.DEVNULL
        )
    except OSError as exc:
        return AgentResult(
            ok=False, error=f"cannot run {argv[0]!r}: {exc.strerror}", retryable=False
        )
    try:
        code = await proc.wait()
    except asyncio.CancelledError:
        # The worker is shutting down: pass SIGTERM on and give the command its exit.
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGTERM)
        await proc.wait()
        raise
    if code == 0:
        return AgentResult(ok=True, details={"exit_code": 0})
    reason = f"signal {-code}" if code < 0 else f"exit code {code}"
    return AgentResult(ok=False, error=f"command {argv[0]!r} failed with {reason}")
