"""The dashboard of a real daemon over HTTP: the page, the snapshot, the event stream, the
token, and never a secret."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from swarmd.daemon.dashboard.server import MAX_EVENT_STREAMS
from tests.support.cli import Daemon, log_events, swarmd, wait_until, write_ticket
from tests.support.dashboard import TOKEN, dashboard_daemon, events_of, read_events
from tests.support.fake_llm import FakeLLMServer, Fault
from tests.support.llm_env import OPENAI_KEY, offline_cli_env, provider_env

BEARER = {"Authorization": f"Bearer {TOKEN}"}


@dataclass(frozen=True)
class Served:
    url: str
    home: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def open_dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A daemon with its dashboard on the default host, no token, and one finished ticket."""
    tmp = tmp_path_factory.mktemp("dashboard")
    home = tmp / "home"
    home.mkdir()
    env = offline_cli_env(home)
    daemon, url = dashboard_daemon(env, home)
    try:
        ticket = {
            "title": "two steps",
            "tasks": [
                {"name": "first", "agent": "echo", "prompt": "one"},
                {"name": "second", "agent": "echo", "prompt": "two", "needs": ["first"]},
            ],
        }
        done = swarmd("submit", str(write_ticket(tmp, ticket)), "--wait", env=env)
        assert done.returncode == 0, done.stderr
        yield Served(url, home, env)
    finally:
        daemon.stop()


def test_the_dashboard_binds_loopback_by_default(open_dashboard: Served) -> None:
    serving = [e for e in log_events(open_dashboard.home) if e.get("event") == "dashboard_serving"]

    assert serving[-1]["url"].startswith("http://127.0.0.1:")
    assert serving[-1]["token"] is False


def test_the_page_is_one_self_contained_html_file(open_dashboard: Served) -> None:
    response = httpx.get(f"{open_dashboard.url}/", timeout=10)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "http://" not in response.text and "https://" not in response.text  # no CDN
    assert "EventSource" in response.text


def test_state_shows_the_queue_the_gate_the_models_and_the_tickets_graph(
    open_dashboard: Served,
) -> None:
    state = httpx.get(f"{open_dashboard.url}/state", timeout=10).json()

    assert state["queue"]["succeeded"] == 2
    assert state["gate"]["allowed"] is True
    assert [m["model"] for m in state["models"]] == ["echo/echo"]
    ticket = state["tickets"][0]
    assert (ticket["id"], ticket["title"], ticket["state"]) == (1, "two steps", "succeeded")
    assert [(t["name"], t["depth"], t["needs"]) for t in ticket["tasks"]] == [
        ("first", 0, []),
        ("second", 1, ["first"]),
    ]
    assert state["daemon"]["pid"] > 0 and state["workers"] == []


def test_events_stream_the_log_then_a_snapshot_every_second(open_dashboard: Served) -> None:
    events = events_of(read_events(f"{open_dashboard.url}/events", seconds=2.5))

    kinds = [kind for kind, _ in events]
    assert kinds[0] == "log"
    assert kinds.count("state") >= 2
    logged = [line["event"] for line in events[0][1]]
    assert "supervisor_ready" in logged and "ticket_finished" in logged


def test_a_log_line_appended_while_a_page_is_open_arrives_on_its_stream(
    open_dashboard: Served, tmp_path: Path
) -> None:
    with httpx.stream("GET", f"{open_dashboard.url}/events", timeout=10) as response:
        lines = response.iter_lines()
        next(line for line in lines if line.startswith("data:"))  # the backlog
        ticket = {"title": "later", "tasks": [{"name": "x", "agent": "echo", "prompt": "x"}]}
        submitted = swarmd("submit", str(write_ticket(tmp_path, ticket)), env=open_dashboard.env)
        assert submitted.returncode == 0, submitted.stderr
        seen = ""
        for line in lines:
            seen += line + "\n"
            if "ticket_finished" in line:
                break

    assert '"event": "ticket_finished"' in seen


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:8787", "[::1]:8787", "LOCALHOST:1"])
def test_without_a_token_loopback_names_are_answered(open_dashboard: Served, host: str) -> None:
    response = httpx.get(f"{open_dashboard.url}/state", headers={"Host": host}, timeout=10)

    assert response.status_code == 200


@pytest.mark.parametrize("host", ["rebound.example", "10.1.2.3:8787", ""])
def test_without_a_token_other_host_names_are_refused(open_dashboard: Served, host: str) -> None:
    response = httpx.get(f"{open_dashboard.url}/state", headers={"Host": host}, timeout=10)

    assert response.status_code == 403
    assert "SWARMD_DASHBOARD_TOKEN" in response.text


def test_unknown_paths_are_404_and_other_methods_405(open_dashboard: Served) -> None:
    assert httpx.get(f"{open_dashboard.url}/metrics", timeout=10).status_code == 404
    assert httpx.post(f"{open_dashboard.url}/state", timeout=10).status_code == 405


def test_a_head_that_never_ends_is_cut_off_without_holding_up_other_requests(
    open_dashboard: Served,
) -> None:
    host, port = open_dashboard.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as silent:
        silent.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and nothing more

        assert httpx.get(f"{open_dashboard.url}/state", timeout=10).status_code == 200
        silent.settimeout(15)
        assert silent.recv(1024) == b""  # closed by the server, with no answer


def test_an_oversized_request_head_is_refused(open_dashboard: Served) -> None:
    response = httpx.get(
        f"{open_dashboard.url}/state", headers={"X-Padding": "x" * 20_000}, timeout=10
    )

    assert response.status_code == 431


@pytest.fixture(scope="module")
def guarded_dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A daemon bound to every address with a token, a provider key, and a provider whose
    refusal quotes that key, and a ticket whose title holds both."""
    tmp = tmp_path_factory.mktemp("guarded")
    home = tmp / "home"
    home.mkdir()
    with FakeLLMServer() as server:
        server.script("gpt-refuses", default=Fault.http(400, message="Bad key {api_key}"))
        env = {**offline_cli_env(home), **provider_env(server)}
        daemon, url = dashboard_daemon(env, home, host="0.0.0.0", token=TOKEN)
        try:
            ticket = {
                # A title is the user's own text: the page shows it with the secrets scrubbed.
                "title": f"leak {OPENAI_KEY} {TOKEN}",
                "agent": "llm",
                "tasks": [
                    {"name": "fine", "prompt": "hi"},
                    {
                        "name": "refused",
                        "prompt": "hi",
                        "model": ["openai/gpt-refuses"],
                        "max_attempts": 1,
                    },
                ],
            }
            done = swarmd("submit", str(write_ticket(tmp, ticket)), "--wait", env=env)
            assert done.returncode == 1, done.stderr
            yield Served(url, home, env)
        finally:
            daemon.stop()


def test_a_dashboard_bound_beyond_loopback_serves_only_requests_with_its_token(
    guarded_dashboard: Served,
) -> None:
    url = guarded_dashboard.url
    serving = [
        e for e in log_events(guarded_dashboard.home) if e.get("event") == "dashboard_serving"
    ]
    assert serving[-1]["url"].startswith("http://0.0.0.0:")

    for path in ("/", "/state", "/events", "/nowhere"):
        refused = httpx.get(f"{url}{path}", timeout=10)
        assert refused.status_code == 401, path
        assert TOKEN not in refused.text
    assert (
        httpx.get(f"{url}/state", headers={"Authorization": "Bearer wrong"}, timeout=10).status_code
        == 401
    )
    assert httpx.get(f"{url}/state", params={"token": TOKEN[:-1]}, timeout=10).status_code == 401

    assert httpx.get(f"{url}/state", headers=BEARER, timeout=10).status_code == 200
    assert httpx.get(f"{url}/", params={"token": TOKEN}, timeout=10).status_code == 200
    assert httpx.get(f"{url}/nowhere", headers=BEARER, timeout=10).status_code == 404
    named = {**BEARER, "Host": "dash.example:8787"}  # any name, with the token
    assert httpx.get(f"{url}/state", headers=named, timeout=10).status_code == 200


def test_neither_the_provider_key_nor_the_token_is_ever_sent(guarded_dashboard: Served) -> None:
    url = guarded_dashboard.url

    def state_with_the_error() -> str | None:
        # The models' health comes with the daemon's next heartbeat (every 2 s at most).
        text = httpx.get(f"{url}/state", headers=BEARER, timeout=10).text
        return text if text.count("Bad key") >= 2 else None

    state = wait_until(state_with_the_error, timeout=15)
    page = httpx.get(f"{url}/", params={"token": TOKEN}, timeout=10).text
    stream = read_events(f"{url}/events?token={TOKEN}", seconds=2.5)

    # The provider's error quoting the key reached the page twice (the dead task's error,
    # the model's last error), and the title holding the key and the token, all scrubbed.
    assert "leak [REDACTED] [REDACTED]" in state
    for text in (state, page, stream):
        assert OPENAI_KEY not in text
        assert TOKEN not in text


def test_settings_that_turn_it_off_serve_nothing(
    home: Path, tmp_path: Path, swarmd_env: dict[str, str]
) -> None:
    daemon = Daemon({**swarmd_env, "SWARMD_DASHBOARD_PORT": "0"}, home).start()
    try:
        events = [e.get("event") for e in log_events(home)]
    finally:
        daemon.stop()

    assert "supervisor_ready" in events and "dashboard_serving" not in events


def test_open_event_streams_are_capped_and_the_next_one_is_told_to_retry(
    open_dashboard: Served,
) -> None:
    with contextlib.ExitStack() as streams:
        client = streams.enter_context(httpx.Client(timeout=10))
        for _ in range(MAX_EVENT_STREAMS):
            response = streams.enter_context(client.stream("GET", f"{open_dashboard.url}/events"))
            assert response.status_code == 200
            next(response.iter_lines())  # the stream is open on the server's side

        refused = httpx.get(f"{open_dashboard.url}/events", timeout=10)

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "10"
    assert httpx.get(f"{open_dashboard.url}/state", timeout=10).status_code == 200
