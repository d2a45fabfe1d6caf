"""What the log says of attempts: failures stand out at warning, the rest stays at info."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import log_events, swarmd, write_ticket


def test_failed_and_dead_attempts_are_warnings_and_a_success_is_info(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    ticket = {
        "title": "mixed",
        "tasks": [
            {"name": "ok", "agent": "echo", "prompt": "fine"},
            {
                "name": "bad",
                "agent": "command",
                "command": ["sh", "-c", "exit 3"],
                "max_attempts": 2,
            },
        ],
    }
    result = swarmd("run-ticket", str(write_ticket(tmp_path, ticket)), "--wait", env=swarmd_env)
    assert result.returncode == 1

    finished = {
        (e["task"], e["attempt"]): e["level"]
        for e in log_events(home)
        if e.get("event") == "attempt_finished"
    }
    assert finished == {("1.ok", 1): "info", ("1.bad", 1): "warning", ("1.bad", 2): "warning"}
    dead = [e for e in log_events(home) if e.get("event") == "task_dead"]
    assert [(e["task"], e["level"]) for e in dead] == [("1.bad", "warning")]

    shown = swarmd("logs", "--level", "warning", "--json", env=swarmd_env)
    assert shown.returncode == 0
    assert shown.stdout.count('"attempt_finished"') == 2
