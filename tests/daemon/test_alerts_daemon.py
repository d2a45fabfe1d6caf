"""Alerts from a real daemon: a command gets the JSON on stdin, a hanging webhook slows nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.cli import Daemon, cli_env, swarmd, wait_until, write_ticket
from tests.support.webhook_server import HANG, webhook_server

RECORD_ALERT = """
import json, os, sys
alert = json.load(sys.stdin)
alert["env"] = {k: v for k, v in os.environ.items() if k.startswith("SWARMD_EVENT")}
with open(sys.argv[1], "a") as out:
    out.write(json.dumps(alert) + "\\n")
"""


def alerts_in(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def events_in(path: Path) -> list[str]:
    return [alert["event"] for alert in alerts_in(path)]


def record_command(script_dir: Path, out: Path) -> str:
    script = script_dir / "record_alert.py"
    script.write_text(RECORD_ALERT)
    return f"{sys.executable} {script} {out}"


def echo_ticket(directory: Path, count: int, name: str) -> Path:
    tasks = [{"name": f"t{i}", "agent": "echo", "prompt": f"hello {i}"} for i in range(count)]
    return write_ticket(directory, {"title": name, "tasks": tasks}, name=f"{name}.json")


def test_the_command_gets_each_alert_as_json_on_stdin_and_in_its_environment(
    tmp_path: Path, home: Path, swarmd_env: dict[str, str]
) -> None:
    out = tmp_path / "alerts.jsonl"
    env = {**swarmd_env, "SWARMD_NOTIFY_COMMAND": record_command(tmp_path, out)}
    failing = {
        "title": "broken",
        "tasks": [{"name": "x", "agent": "command", "command": ["false"], "max_attempts": 1}],
    }
    daemon = Daemon(env, home).start()
    try:
        wait_until(lambda: "daemon_started" in events_in(out))
        assert (
            swarmd("submit", str(echo_ticket(tmp_path, 2, "fine")), "--wait", env=env).returncode
            == 0
        )
        assert (
            swarmd("submit", str(write_ticket(tmp_path, failing)), "--wait", env=env).returncode
            == 1
        )
        wait_until(
            lambda: {"ticket_succeeded", "task_dead", "ticket_failed"} <= set(events_in(out))
        )
    finally:
        daemon.stop()
    wait_until(lambda: "daemon_stopped" in events_in(out))

    by_event = {alert["event"]: alert for alert in alerts_in(out)}
    succeeded = by_event["ticket_succeeded"]
    assert (succeeded["ticket"], succeeded["title"], succeeded["state"]) == (1, "fine", "succeeded")
    assert succeeded["env"]["SWARMD_EVENT"] == "ticket_succeeded"
    assert succeeded["env"]["SWARMD_EVENT_TICKET"] == "1"
    assert by_event["task_dead"]["task"] == "2.x"
    assert by_event["ticket_failed"]["ticket"] == 2


def timed_ticket(env: dict[str, str], home: Path, ticket: Path) -> float:
    daemon = Daemon(env, home).start()
    try:
        started = time.monotonic()
        result = swarmd("submit", str(ticket), "--wait", env=env)
        elapsed = time.monotonic() - started
        assert result.returncode == 0, result.stderr
    finally:
        daemon.stop()
    return elapsed


def test_a_hanging_webhook_never_slows_dispatch(tmp_path: Path) -> None:
    plain_home, hooked_home = tmp_path / "plain", tmp_path / "hooked"
    plain = timed_ticket(cli_env(plain_home), plain_home, echo_ticket(tmp_path, 6, "plain"))
    with webhook_server(HANG) as server:
        env = {
            **cli_env(hooked_home),
            "SWARMD_WEBHOOK_URL": server.url,
            "SWARMD_NOTIFY_TIMEOUT_SECONDS": "8",
        }
        hooked = timed_ticket(env, hooked_home, echo_ticket(tmp_path, 6, "hooked"))
        assert server.received, "the webhook was never called"

    # The webhook hangs for 8 s a try while the ticket runs: any wait on it would show.
    assert hooked < plain + 3.0, (plain, hooked)
    assert hooked < 8.0, (plain, hooked)


def test_swarmd_alert_sends_daemon_down_through_the_command(
    tmp_path: Path, home: Path, swarmd_env: dict[str, str]
) -> None:
    out = tmp_path / "alerts.jsonl"
    env = {**swarmd_env, "SWARMD_NOTIFY_COMMAND": record_command(tmp_path, out)}

    status = swarmd("status", env=env)
    result = swarmd("alert", "--event", "daemon_down", env=env)

    assert status.returncode != 0  # no daemon: what the dead man's timer looks for
    assert result.returncode == 0, result.stderr
    [alert] = alerts_in(out)
    assert alert["event"] == "daemon_down"
    assert "down" in alert["text"]


def test_swarmd_alert_exits_1_when_the_alert_is_not_delivered(
    home: Path, swarmd_env: dict[str, str]
) -> None:
    env = {**swarmd_env, "SWARMD_NOTIFY_COMMAND": "false", "SWARMD_NOTIFY_ATTEMPTS": "1"}

    result = swarmd("alert", "--event", "daemon_down", env=env)

    assert result.returncode == 1
    assert "not delivered" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_systemd_unit_verifies_including_the_dead_mans_timer() -> None:
    import shutil

    if shutil.which("systemd-analyze") is None:
        return
    check = Path(__file__).resolve().parents[2] / "scripts" / "check-systemd-unit"
    result = subprocess.run([str(check)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "swarmd-deadman.service OK" in result.stdout
    assert "swarmd-deadman.timer OK" in result.stdout
