"""Alerts in-process: the webhook and command sinks, retries, the queue, the redactor."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import time
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from swarmd.config import load_settings
from swarmd.daemon.alert_sinks import SIGNATURE_HEADER, WebhookSink
from swarmd.daemon.alerts import Alerter, AlertWatch, build_alerter
from swarmd.errors import ConfigError
from swarmd.models import AlertEvent, TicketState
from swarmd.store import Store
from tests.support.recording_sink import RecordingSink
from tests.support.webhook_server import HANG, webhook_server

HOOK_SECRET = "whsec-do-not-leak-0123456789"
OPENAI_KEY = "sk-proj-AlertsMustNeverCarryThis0123456789"

DUMP_ALERT = """
import json, os, sys
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({"stdin": sys.stdin.read(), "env": dict(os.environ)}) + "\\n")
"""


def webhook(url: str, *, secret: str | None = None, timeout: float = 5.0) -> WebhookSink:
    return WebhookSink(url, client=httpx.AsyncClient(), secret=secret, timeout=timeout)


async def test_webhook_receives_a_signed_alert_with_a_slack_text_field() -> None:
    with webhook_server(200) as server:
        alerter = Alerter([webhook(server.url, secret=HOOK_SECRET)])
        alerter.send(AlertEvent.TICKET_FAILED, "ticket 7 failed", ticket=7, state="failed")
        await alerter.deliver_queued()
        await alerter.aclose()

    [request] = server.received
    expected = hmac.new(HOOK_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers[SIGNATURE_HEADER] == f"sha256={expected}"
    payload = json.loads(request.body)
    assert payload["event"] == "ticket_failed"
    assert payload["ticket"] == 7
    assert "ticket 7 failed" in payload["text"]
    assert request.headers["Content-Type"] == "application/json"


async def test_a_webhook_answering_500_is_retried_until_it_takes_the_alert() -> None:
    with webhook_server(500, 500, 200) as server:
        alerter = Alerter([webhook(server.url)], backoff_seconds=0.01)
        alerter.send(AlertEvent.TASK_DEAD, "task 1.a is dead")
        await alerter.deliver_queued()
        await alerter.aclose()

    assert len(server.received) == 3
    assert (alerter.delivered, alerter.failed) == (1, 0)


async def test_a_webhook_refusing_with_a_4xx_is_not_retried() -> None:
    with webhook_server(404) as server:
        alerter = Alerter([webhook(server.url)], backoff_seconds=0.01)
        alerter.send(AlertEvent.TASK_DEAD, "task 1.a is dead")
        await alerter.deliver_queued()
        await alerter.aclose()

    assert len(server.received) == 1
    assert alerter.failed == 1


async def test_a_hanging_webhook_is_cut_at_its_timeout_and_retried() -> None:
    with webhook_server(HANG) as server:
        alerter = Alerter([webhook(server.url, timeout=0.3)], attempts=2, backoff_seconds=0.01)
        alerter.send(AlertEvent.GATE_HELD, "the gate held")
        started = time.monotonic()
        await alerter.deliver_queued()
        elapsed = time.monotonic() - started
        await alerter.aclose()

    assert len(server.received) == 2
    assert alerter.failed == 1
    assert elapsed < 5.0


async def test_a_full_queue_drops_its_oldest_alert_and_logs_it() -> None:
    sink = RecordingSink()
    alerter = Alerter([sink], capacity=3)
    with capture_logs() as logs:
        for number in range(5):
            alerter.send(AlertEvent.TICKET_SUCCEEDED, f"ticket {number}", ticket=number)
    await alerter.deliver_queued()

    assert [p["ticket"] for p in sink.payloads] == [2, 3, 4]
    assert alerter.dropped == 2
    assert [e["event"] for e in logs].count("alert_dropped") == 2


async def test_only_the_configured_events_are_sent() -> None:
    sink = RecordingSink()
    alerter = Alerter([sink], events=[AlertEvent.TICKET_FAILED])
    alerter.send(AlertEvent.TICKET_SUCCEEDED, "ticket 1 succeeded")
    alerter.send(AlertEvent.TICKET_FAILED, "ticket 2 failed")
    await alerter.deliver_queued()

    assert [p["event"] for p in sink.payloads] == ["ticket_failed"]


async def test_no_secret_reaches_the_command_or_the_webhook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dump = tmp_path / "alerts.jsonl"
    with webhook_server(200) as server:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        monkeypatch.setenv("SWARMD_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("SWARMD_WEBHOOK_URL", server.url)
        monkeypatch.setenv("SWARMD_WEBHOOK_SECRET", HOOK_SECRET)
        command = f"{sys.executable} -c '{DUMP_ALERT}' {dump}"
        monkeypatch.setenv("SWARMD_NOTIFY_COMMAND", command)
        settings = load_settings()
        # The daemon's environment: the key under its own name and under another.
        base_env = {**os.environ, "COPIED_KEY": OPENAI_KEY, "SHELL_HOOK": server.url}
        alerter = build_alerter(settings, base_env)
        alerter.send(
            AlertEvent.TASK_DEAD,
            f"task 1.a is dead: 401 for key {OPENAI_KEY}",
            error=f"secret {HOOK_SECRET} in {server.url}",
        )
        await alerter.deliver_queued()
        await alerter.aclose()

    assert alerter.delivered == 2
    [request] = server.received
    [record] = [json.loads(line) for line in dump.read_text().splitlines()]
    for seen in (request.body.decode(), record["stdin"], json.dumps(record["env"])):
        assert OPENAI_KEY not in seen
        assert HOOK_SECRET not in seen
        assert server.url not in seen
    assert "[REDACTED]" in json.loads(record["stdin"])["text"]
    assert record["env"]["SWARMD_EVENT"] == "task_dead"


def test_a_webhook_url_that_is_not_http_is_refused_without_quoting_its_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SWARMD_WEBHOOK_URL", "ftp://hooks.example/T0KEN")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "SWARMD_WEBHOOK_URL" in str(caught.value)
    assert "T0KEN" not in str(caught.value)


def test_an_unknown_event_name_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SWARMD_NOTIFY_EVENTS", "ticket_failed,ticket_exploded")
    with pytest.raises(ConfigError, match="ticket_exploded"):
        load_settings()


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_gate_held_past_its_allowance_is_alerted_once_per_hold(tmp_path: Path) -> None:
    sink, ticks = RecordingSink(), Ticks()
    async with await Store.open(tmp_path / "swarmd.db") as store:
        watch = AlertWatch(
            Alerter([sink]), store, model_chain=(), gate_held_seconds=600, clock=ticks
        )
        held = {"gate": {"allowed": False, "reason": "free memory 200 MB < 1024 MB"}}
        for now in (0, 300, 601, 900):
            ticks.now = now
            watch.heartbeat(held, {})
        ticks.now = 901
        watch.heartbeat({"gate": {"allowed": True}}, {})
        for now in (1000, 1700):
            ticks.now = now
            watch.heartbeat(held, {})
        await watch.alerter.deliver_queued()

    assert [p["event"] for p in sink.payloads] == ["gate_held", "gate_held"]
    assert "free memory" in sink.payloads[0]["reason"]


async def test_every_model_of_the_chain_cooling_down_is_alerted_once(tmp_path: Path) -> None:
    sink = RecordingSink()
    chain = ("openai/a", "anthropic/b")
    cooling = {"cooling_until": time.time() + 60, "cooling_reason": "rate_limit"}
    async with await Store.open(tmp_path / "swarmd.db") as store:
        watch = AlertWatch(Alerter([sink]), store, model_chain=chain, gate_held_seconds=600)
        watch.heartbeat({}, {"openai/a": cooling})  # one model left: no alert
        watch.heartbeat({}, {"openai/a": cooling, "anthropic/b": cooling})
        watch.heartbeat({}, {"openai/a": cooling, "anthropic/b": cooling})
        await watch.alerter.deliver_queued()

    [payload] = sink.payloads
    assert payload["event"] == "models_cooling"
    assert [m["model"] for m in payload["models"]] == list(chain)


async def test_a_finished_ticket_is_alerted_with_its_title(tmp_path: Path) -> None:
    from swarmd.models import TaskSpec, TicketSpec

    sink = RecordingSink()
    async with await Store.open(tmp_path / "swarmd.db") as store:
        submitted = await store.submit_ticket(
            TicketSpec(title="landing page", tasks=(TaskSpec(name="a", agent="echo"),))
        )
        watch = AlertWatch(Alerter([sink]), store, model_chain=(), gate_held_seconds=600)
        await watch.ticket_finished(submitted.ticket_id, TicketState.CANCELLED)
        await watch.alerter.deliver_queued()

    [payload] = sink.payloads
    assert payload["event"] == "ticket_cancelled"
    assert payload["title"] == "landing page"
