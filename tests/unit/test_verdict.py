"""How a worker session turns what it saw into the attempt's ending."""

import asyncio
from pathlib import Path
from typing import Any

from swarmd.agents.registry import BUILTIN_AGENTS
from swarmd.models import Attempt, ClaimedTask, ExitReason, Task, TaskState
from swarmd.spawn.session import WorkerSession
from swarmd.spawn.spawners import ExecSpawner
from swarmd.wire.job import Job


class StubProcess:
    pid = 4242
    lost_with_spawner = False


def session(tmp_path: Path, **seen: Any) -> WorkerSession:
    task = Task(
        id=1,
        ticket_id=1,
        name="t",
        state=TaskState.RUNNING,
        agent="echo",
        prompt="p",
        command=None,
        needs=(),
        priority=0,
        max_attempts=3,
        failures=0,
        timeout_seconds=None,
        model=None,
        checks=(),
        retry_at=None,
        created_at=0.0,
        finished_at=None,
        last_error=None,
    )
    attempt = Attempt(
        id=1,
        task_id=1,
        number=1,
        token="tok",
        started_at=0.0,
        ended_at=None,
        pid=None,
        pid_create_time=None,
        exit_reason=None,
        error=None,
        result=None,
    )
    job = Job(
        ticket_id=1,
        task_id=1,
        task="t",
        attempt=1,
        agent=BUILTIN_AGENTS["echo"],
        workspace=str(tmp_path),
        archive_path=str(tmp_path / "a.tar.gz"),
        deadline=0.0,
    )
    made = WorkerSession(
        ClaimedTask(task, attempt),
        job,
        answer_call=lambda m, a: asyncio.sleep(0),  # type: ignore[arg-type,return-value]
        grace_seconds=1.0,
        skip_grace=asyncio.Event(),
        log_path=tmp_path / "log",
        spawner=ExecSpawner(),
    )
    for name, value in seen.items():
        setattr(made, name, value)
    return made


def test_a_reported_success_with_a_clean_exit_is_ok(tmp_path: Path) -> None:
    verdict = session(tmp_path, result={"ok": True, "result": {"x": 1}}, returncode=0).verdict()
    assert (verdict.reason, verdict.details) == (ExitReason.OK, {"x": 1})


def test_a_kill_reason_wins_over_a_missing_result(tmp_path: Path) -> None:
    seen = session(tmp_path, returncode=-9, kill_reason=ExitReason.MEMORY, kill_detail="too big")
    assert (seen.verdict().reason, seen.verdict().error) == (ExitReason.MEMORY, "too big")


def test_an_agent_error_keeps_its_retryable_flag(tmp_path: Path) -> None:
    result = {"ok": False, "error": "bad request", "retryable": False}
    verdict = session(tmp_path, result=result, returncode=0).verdict()
    assert (verdict.reason, verdict.retryable) == (ExitReason.ERROR, False)


def test_a_silent_death_names_the_signal(tmp_path: Path) -> None:
    verdict = session(tmp_path, returncode=-11).verdict()
    assert verdict.reason is ExitReason.SIGNAL
    assert verdict.error is not None and "signal 11" in verdict.error


def test_a_worker_lost_with_the_fork_server_is_interrupted_not_failed(tmp_path: Path) -> None:
    lost = StubProcess()
    lost.lost_with_spawner = True
    verdict = session(tmp_path, returncode=-9, proc=lost).verdict()
    assert verdict.reason is ExitReason.INTERRUPTED
