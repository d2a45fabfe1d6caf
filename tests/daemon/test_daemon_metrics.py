"""A real daemon runs a ticket with successes and failures; its metrics and log are read back.

One run serves every test here: a daemon with the textfile and the port configured, llm
tasks against the loopback fake provider (one answered, one refused with 400, one whose
first model refuses the key), and command tasks that succeed and fail. The metrics must
parse and agree with the database the daemon wrote, and with what the provider saw.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support.cli import Daemon, log_events, swarmd, wait_until, write_ticket
from tests.support.fake_llm import FakeLLMServer, Fault
from tests.support.llm_env import FALLBACK, PRIMARY, provider_env
from tests.support.llm_env import offline_cli_env as cli_env

BAD_MODEL = "openai/gpt-bad"
FLAKY_MODEL = "openai/gpt-flaky"
PRICES = {PRIMARY: [1.0, 2.0]}  # USD per million prompt and completion tokens

TICKET = {
    "title": "metrics",
    "agent": "llm",
    "tasks": [
        {"name": "one", "prompt": "Write one"},
        {"name": "two", "prompt": "Write two"},
        {"name": "three", "prompt": "Write three", "needs": ["one"]},
        {"name": "flaky", "prompt": "Write flaky", "model": [FLAKY_MODEL, FALLBACK]},
        {"name": "bad", "prompt": "Write bad", "model": [BAD_MODEL]},
        {"name": "fine", "agent": "command", "command": ["sh", "-c", "exit 0"]},
        {
            "name": "broken",
            "agent": "command",
            "command": ["sh", "-c", "exit 3"],
            "max_attempts": 2,
        },
    ],
}


@dataclass(frozen=True)
class FinishedRun:
    home: Path
    text: str  # the textfile the daemon left as it stopped
    served: str  # the textfile while the daemon ran
    scraped: tuple[str, str]  # GET /metrics just before and just after reading it
    requests_seen: dict[str, int]  # by the provider, per wire model name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rows(home: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{home / 'swarmd.db'}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FinishedRun]:
    tmp = tmp_path_factory.mktemp("metrics")
    home = tmp / "home"
    home.mkdir()
    textfile = tmp / "swarmd.prom"
    port = free_port()
    with FakeLLMServer() as server:
        server.script("gpt-bad", default=Fault.http(400, message="the request is malformed"))
        server.script("gpt-flaky", default=Fault.http(401))
        env = {
            **cli_env(home),
            **provider_env(server),
            "SWARMD_METRICS_TEXTFILE": str(textfile),
            "SWARMD_METRICS_PORT": str(port),
            "SWARMD_MODEL_PRICES": json.dumps(PRICES),
        }
        daemon = Daemon(env, home).start()
        try:
            submitted = swarmd("submit", str(write_ticket(tmp, TICKET)), env=env)
            assert submitted.returncode == 0, submitted.stderr
            wait_until(
                lambda: rows(home, "SELECT state FROM tickets")[0][0] in ("succeeded", "failed"),
                timeout=60,
            )
            url = f"http://127.0.0.1:{port}/metrics"
            before = httpx.get(url, timeout=10).text
            served = textfile.read_text()
            after = httpx.get(url, timeout=10).text
        finally:
            daemon.stop()
        # The daemon refreshes the file once more as it stops: the final counts.
        text = textfile.read_text()
        yield FinishedRun(home, text, served, (before, after), server.counts())


def families(text: str) -> dict[str, list[Sample]]:
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def by_labels(samples: list[Sample], *keys: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels[k] for k in keys): s.value for s in samples if s.value}


def results(home: Path) -> list[dict[str, Any]]:
    return [json.loads(r[0]) for r in rows(home, "SELECT result FROM attempts") if r[0]]


def test_metrics_parse_with_the_prometheus_parser(finished_run: FinishedRun) -> None:
    found = families(finished_run.text)

    assert {
        "swarmd_tasks",
        "swarmd_workers_running",
        "swarmd_attempts",
        "swarmd_attempt_duration_seconds",
        "swarmd_llm_requests",
        "swarmd_llm_tokens",
        "swarmd_llm_cost_usd",
        "swarmd_gate_holds",
        "swarmd_daemon_heartbeat_timestamp_seconds",
    } <= set(found)


def test_attempt_counters_agree_with_the_database(finished_run: FinishedRun) -> None:
    found = families(finished_run.text)
    stored = dict(rows(finished_run.home, "SELECT exit_reason, COUNT(*) FROM attempts GROUP BY 1"))

    assert by_labels(found["swarmd_attempts"], "exit_reason") == {
        (reason,): count for reason, count in stored.items()
    }
    assert stored == {"ok": 5, "error": 3}


def test_duration_histogram_agrees_with_the_database(finished_run: FinishedRun) -> None:
    histogram = {
        s.name: s.value
        for s in families(finished_run.text)["swarmd_attempt_duration_seconds"]
        if not s.name.endswith("_bucket")
    }
    [(count, total)] = rows(
        finished_run.home, "SELECT COUNT(*), SUM(ended_at - started_at) FROM attempts"
    )

    assert histogram["swarmd_attempt_duration_seconds_count"] == count
    assert histogram["swarmd_attempt_duration_seconds_sum"] == pytest.approx(total)


def test_llm_request_counters_agree_with_the_database_and_the_provider(
    finished_run: FinishedRun,
) -> None:
    counted = by_labels(families(finished_run.text)["swarmd_llm_requests"], "model", "outcome")
    stored: Counter[tuple[str, str]] = Counter()
    for result in results(finished_run.home):
        for request in result.get("tries", []):
            stored[request["model"], request["outcome"]] += 1
    per_model: Counter[str] = Counter()
    for (model, _), n in counted.items():
        per_model[model.partition("/")[2]] += int(n)

    assert counted == dict(stored)
    assert per_model == finished_run.requests_seen
    assert {model for model, _ in counted} == {PRIMARY, FALLBACK, BAD_MODEL, FLAKY_MODEL}


def test_token_and_cost_counters_agree_with_the_database(finished_run: FinishedRun) -> None:
    found = families(finished_run.text)
    tokens: Counter[tuple[str, str]] = Counter()
    cost: dict[str, float] = {}
    for result in results(finished_run.home):
        if "usage" in result:
            tokens[result["model"], "prompt"] += result["usage"]["prompt_tokens"]
            tokens[result["model"], "completion"] += result["usage"]["completion_tokens"]
            cost[result["model"]] = cost.get(result["model"], 0.0) + (result["cost_usd"] or 0.0)

    assert by_labels(found["swarmd_llm_tokens"], "model", "kind") == dict(tokens)
    assert by_labels(found["swarmd_llm_cost_usd"], "model") == pytest.approx(
        {(model,): usd for model, usd in cost.items() if usd}
    )
    assert cost[PRIMARY] > 0


def test_queue_depth_gauge_agrees_with_the_database(finished_run: FinishedRun) -> None:
    gauge = by_labels(families(finished_run.text)["swarmd_tasks"], "state")
    stored = dict(rows(finished_run.home, "SELECT state, COUNT(*) FROM tasks GROUP BY 1"))

    assert gauge == {(state,): n for state, n in stored.items()}
    assert stored == {"succeeded": 5, "dead": 2}


def test_endpoint_serves_the_text_of_the_textfile(finished_run: FinishedRun) -> None:
    # A refresh may land between the three reads, but not twice in that instant.
    assert finished_run.served in finished_run.scraped
    assert "swarmd_attempts_total" in finished_run.served


def test_log_holds_one_attempt_finished_line_per_attempt(finished_run: FinishedRun) -> None:
    lines = Counter(
        (event["task"], event["attempt"])
        for event in log_events(finished_run.home)
        if event.get("event") == "attempt_finished"
    )
    stored = rows(
        finished_run.home,
        "SELECT t.ticket_id || '.' || t.name, a.number, a.exit_reason "
        "FROM attempts AS a JOIN tasks AS t ON t.id = a.task_id",
    )

    assert lines == Counter((ref, number) for ref, number, _ in stored)
    assert set(lines.values()) == {1}
    reasons = {
        (e["task"], e["attempt"]): e["exit_reason"]
        for e in log_events(finished_run.home)
        if e.get("event") == "attempt_finished"
    }
    assert reasons == {(ref, number): reason for ref, number, reason in stored}
