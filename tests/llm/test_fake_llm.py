"""The fake provider itself: scripting, recording, and steering it in another process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.fake_llm import FakeLLMControl, FakeLLMServer, Fault

ROOT = Path(__file__).resolve().parents[2]
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def standalone() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    script = json.dumps({"m": {"faults": [Fault.http(500).to_dict()]}})
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_llm", "--port", "0", "--script", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("fake-llm listening on "), line
        yield line.split()[-1], process
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout:
            process.stdout.close()


def post(url: str, body: object = CHAT, path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(url + path, json=body, trust_env=False, timeout=30)


def test_scripted_faults_are_served_in_order_then_the_default(fake_llm: FakeLLMServer) -> None:
    fake_llm.script(
        "m", Fault.http(500), Fault.rate_limited(retry_after=3), default=Fault.http(404)
    )

    statuses = [post(fake_llm.url).status_code for _ in range(4)]

    assert statuses == [500, 429, 404, 404]


def test_wildcard_script_answers_every_model(fake_llm: FakeLLMServer) -> None:
    fake_llm.script("*", default=Fault.http(503))

    assert post(fake_llm.url, {"model": "other", "messages": []}).status_code == 503


def test_retry_after_header_is_sent(fake_llm: FakeLLMServer) -> None:
    fake_llm.script("m", Fault.rate_limited(retry_after=3))

    assert post(fake_llm.url).headers["retry-after"] == "3"


def test_anthropic_errors_use_the_anthropic_shape(fake_llm: FakeLLMServer) -> None:
    fake_llm.script("m", Fault.http(529))

    response = post(fake_llm.url, path="/v1/messages")

    assert response.status_code == 529
    assert response.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_minimax_answers_carry_base_resp(fake_llm: FakeLLMServer) -> None:
    response = post(fake_llm.url, path="/minimax/v1/chat/completions")

    assert response.json()["base_resp"] == {"status_code": 0, "status_msg": ""}


def test_every_request_is_recorded_with_its_headers(fake_llm: FakeLLMServer) -> None:
    httpx.post(
        fake_llm.openai_base_url + "/chat/completions",
        json=CHAT,
        headers={"authorization": "Bearer sk-abc"},
        trust_env=False,
    )

    (record,) = fake_llm.requests("m")
    assert record.headers["authorization"] == "Bearer sk-abc"
    assert record.body == CHAT
    assert fake_llm.counts() == {"m": 1}


def test_standalone_server_is_steered_over_its_control_endpoints(
    standalone: tuple[str, subprocess.Popen[str]],
) -> None:
    url, _process = standalone
    control = FakeLLMControl(url)

    first = post(url)  # the script given on the command line
    control.script("m", Fault.http(401))
    second = post(url)
    third = post(url)

    assert [first.status_code, second.status_code, third.status_code] == [500, 401, 200]
    assert control.counts() == {"m": 3}
    assert [r.model for r in control.requests("m")] == ["m", "m", "m"]


def test_standalone_server_exits_cleanly_on_sigterm(
    standalone: tuple[str, subprocess.Popen[str]],
) -> None:
    _url, process = standalone

    process.terminate()

    assert process.wait(timeout=30) == 0
