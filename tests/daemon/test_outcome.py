"""How the daemon turns what a worker session saw into the attempt's ending."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swarmd.agents.registry import BUILTIN_AGENTS
from swarmd.daemon.outcome import Verdict, decide_verdict
from swarmd.models import ExitReason
from swarmd.spawn.session import WorkerExit
from swarmd.wire.result import AgentResult


def session(tmp_path: Path, **seen: Any) -> Seen:
    """The facts a worker session saw: a reported result (as its message), a kill, an exit."""
    del tmp_path
    result = seen.pop("result", None)
    facts: dict[str, Any] = {
        "task": "t",
        "agent_kind": BUILTIN_AGENTS["echo"].kind,
        "result": AgentResult.from_message(result) if result is not None else None,
        "kill_reason": None,
        "kill_detail": None,
        "returncode": None,
        "lost_with_spawner": False,
        **seen,
    }
    return Seen(WorkerExit(**facts))


class Seen:
    def __init__(self, facts: WorkerExit) -> None:
        self.facts = facts

    def verdict(self) -> Verdict:
        return decide_verdict(self.facts)


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
    verdict = session(tmp_path, returncode=-9, lost_with_spawner=True).verdict()
    assert verdict.reason is ExitReason.INTERRUPTED


def test_a_reported_success_stands_when_the_fork_server_dies_before_the_exit(
    tmp_path: Path,
) -> None:
    # The zygote died after the worker sent its result: its exit is reported as SIGKILL.
    result = {"ok": True, "result": {"archive": {"files": 1}}}
    seen = session(tmp_path, result=result, returncode=-9, lost_with_spawner=True)
    assert (seen.verdict().reason, seen.verdict().error) == (ExitReason.OK, None)


def test_a_reported_success_stands_when_the_worker_is_killed_after_sending_it(
    tmp_path: Path,
) -> None:
    result = {"ok": True, "result": {}}
    seen = session(tmp_path, result=result, returncode=-9, kill_reason=ExitReason.TIMEOUT)
    assert seen.verdict().reason is ExitReason.OK


def test_a_worker_lost_with_the_fork_server_after_reporting_a_failure_keeps_the_failure(
    tmp_path: Path,
) -> None:
    result = {"ok": False, "error": "tests failed", "retryable": True}
    seen = session(tmp_path, result=result, returncode=-9, lost_with_spawner=True)
    assert (seen.verdict().reason, seen.verdict().error) == (ExitReason.ERROR, "tests failed")
