"""The echo agent: writes its prompt into the workspace. Offline, instant, deterministic."""

from __future__ import annotations

from pathlib import Path

from swarmd.wire.job import Job
from swarmd.wire.result import AgentResult


def run_echo(job: Job) -> AgentResult:
    name = f"{job.task}.txt"
    text = (job.prompt or "") + "\n"
    (Path(job.workspace) / name).write_text(text, encoding="utf-8")
    return AgentResult(ok=True, details={"files_written": [name]})
