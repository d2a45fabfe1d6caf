"""What each provider puts on the wire and reads back."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from swarmd.llm.echo import answer_offline
from swarmd.llm.errors import (
    BadRequestError,
    MalformedResponseError,
    RateLimitedError,
    ResponseTooLargeError,
)
from swarmd.llm.provider_config import (
    Endpoint,
    ProviderConfig,
    build_provider_config,
    ollama_base_url,
)
from swarmd.llm.router import build_providers
from swarmd.llm.types import ChatRequest, ChatResponse, Message, strip_reasoning
from tests.support.fake_llm import FakeLLMServer, Fault
from tests.support.llm_keys import ANTHROPIC_KEY, MINIMAX_KEY, OPENAI_KEY

REQUEST = ChatRequest(
    messages=(Message("user", "Draft the plan"),),
    system="You are terse.",
    max_tokens=321,
    temperature=0.2,
)


async def ask(
    config: ProviderConfig, client: httpx.AsyncClient, model: str, request: ChatRequest = REQUEST
) -> ChatResponse:
    provider = build_providers(config)[config.provider_name(model)]
    return await provider.complete(
        client,
        model,
        model.partition("/")[2],
        request,
        http_timeout=httpx.Timeout(5.0),
        clock=time.time,
    )


async def test_anthropic_request_has_key_version_max_tokens_and_top_level_system(
    fake_llm: FakeLLMServer, provider_config: ProviderConfig, http_client: httpx.AsyncClient
) -> None:
    await ask(provider_config, http_client, "anthropic/claude-x")

    sent = fake_llm.requests("claude-x")[0]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert sent.body == {
        "model": "claude-x",
        "max_tokens": 321,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Draft the plan"}],
        "temperature": 0.2,
    }


async def test_anthropic_folds_system_messages_into_the_top_level_system(
    fake_llm: FakeLLMServer, provider_config: ProviderConfig, http_client: httpx.AsyncClient
) -> None:
    request = ChatRequest(
        messages=(Message("system", "Answer in French."), Message("user", "Bonjour")),
        system="You are terse.",
    )

    await ask(provider_config, http_client, "anthropic/claude-x", request)

    body = fake_llm.requests("claude-x")[0].body
    assert body["system"] == "You are terse.\n\nAnswer in French."
    assert body["messages"] == [{"role": "user", "content": "Bonjour"}]


async def test_anthropic_answer_reads_text_blocks_and_usage(
    fake_llm: FakeLLMServer, provider_config: ProviderConfig, http_client: httpx.AsyncClient
) -> None:
    fake_llm.script("claude-x", Fault.ok('<file path="a.md">\nhi\n</file>\n'))

    response = await ask(provider_config, http_client, "anthropic/claude-x")

    assert response.model == "anthropic/claude-x"
    assert response.text == '<file path="a.md">\nhi\n</file>\n'
    assert (response.prompt_tokens, response.completion_tokens) == (6, 4)
    assert response.raw_finish_reason == "end_turn"


async def test_anthropic_answer_concatenates_only_text_blocks() -> None:
    answer = {
        "type": "message",
        "content": [
            {"type": "thinking", "thinking": "private"},
            {"type": "text", "text": "one "},
            {"type": "text", "text": "two"},
        ],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    config = ProviderConfig(endpoints={"anthropic": Endpoint("https://example.test", "k")})

    async with httpx.AsyncClient(transport=transport) as client:
        response = await ask(config, client, "anthropic/claude-x")

    assert response.text == "one two"


async def test_openai_request_has_bearer_key_system_message_and_max_completion_tokens(
    fake_llm: FakeLLMServer, provider_config: ProviderConfig, http_client: httpx.AsyncClient
) -> None:
    response = await ask(provider_config, http_client, "openai/gpt-x")

    sent = fake_llm.requests("gpt-x")[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert sent.body == {
        "model": "gpt-x",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Draft the plan"},
        ],
        "max_completion_tokens": 321,
        "temperature": 0.2,
    }
    assert response.text == '<file path="answer.md">\ngpt-x answers: Draft the plan\n</file>\n'
    assert (response.prompt_tokens, response.completion_tokens) == (6, 8)


async def test_generic_server_gets_max_tokens_and_no_key(
    fake_llm: FakeLLMServer, provider_config: ProviderConfig, http_client: httpx.AsyncClient
) -> None:
    await ask(provider_config, http_client, "vllm/qwen")

    sent = fake_llm.requests("qwen")[0]
    assert sent.body["max_tokens"] == 321
    assert "max_completion_tokens" not in sent.body
    assert "authorization" not in sent.headers


async def test_ollama_is_reached_at_its_openai_compatible_path(
    fake_llm: FakeLLMServer, provider_config: ProviderConfig, http_client: httpx.AsyncClient
) -> None:
    await ask(provider_config, http_client, "ollama/llama3.2")

    assert fake_llm.requests("llama3.2")[0].path == "/v1/chat/completions"


async def test_temperature_is_left_out_when_unset(
    fake_llm: FakeLLMServer, provider_config: ProviderConfig, http_client: httpx.AsyncClient
) -> None:
    await ask(provider_config, http_client, "openai/gpt-x", ChatRequest.from_prompt("hi"))

    assert "temperature" not in fake_llm.requests("gpt-x")[0].body


async def test_extra_headers_are_sent(
    fake_llm: FakeLLMServer, http_client: httpx.AsyncClient
) -> None:
    endpoint = Endpoint(fake_llm.openai_base_url, "k", {"HTTP-Referer": "https://swarmd.test"})
    config = ProviderConfig(endpoints={"openrouter": endpoint})

    await ask(config, http_client, "openrouter/meta/llama")

    sent = fake_llm.requests("meta/llama")[0]
    assert sent.headers["http-referer"] == "https://swarmd.test"


async def test_minimax_answer_keeps_reasoning_out_of_the_text(
    fake_llm: FakeLLMServer, provider_config: ProviderConfig, http_client: httpx.AsyncClient
) -> None:
    raw = '<think>\nI should write a file.\n</think>\n<file path="a.md">\nhi\n</file>\n'
    fake_llm.script("MiniMax-M2", Fault.ok(raw))

    response = await ask(provider_config, http_client, "minimax/MiniMax-M2")

    assert fake_llm.requests("MiniMax-M2")[0].headers["authorization"] == f"Bearer {MINIMAX_KEY}"
    assert response.text == '<file path="a.md">\nhi\n</file>\n'
    assert response.raw_text == raw
    assert response.full_text == raw


async def test_openai_compatible_error_inside_http_200_is_classified() -> None:
    body = {"error": {"code": 429, "message": "upstream rate limited"}}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    config = ProviderConfig(endpoints={"openrouter": Endpoint("https://example.test/v1")})

    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(RateLimitedError):
            await ask(config, client, "openrouter/some/model")


async def test_choices_missing_from_a_200_is_malformed_not_a_crash() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"id": "x"}))
    config = ProviderConfig(endpoints={"openai": Endpoint("https://example.test/v1", "k")})

    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(MalformedResponseError) as caught:
            await ask(config, client, "openai/gpt-x")

    assert caught.value.summary == "malformed response (unexpected shape)"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (None, "http://127.0.0.1:11434/v1"),
        ("0.0.0.0", "http://127.0.0.1:11434/v1"),
        ("localhost:8080", "http://localhost:8080/v1"),
        ("http://gpu-box:11434", "http://gpu-box:11434/v1"),
        ("https://ollama.example.com/", "https://ollama.example.com/v1"),
        ("http://gpu-box", "http://gpu-box/v1"),
        ("gpu-box", "http://gpu-box:11434/v1"),
        ("[::1]:11434", "http://[::1]:11434/v1"),
    ],
)
def test_ollama_host_becomes_a_base_url(host: str | None, expected: str) -> None:
    assert ollama_base_url(host) == expected


def test_provider_is_configured_by_a_key_or_a_base_url() -> None:
    config = build_provider_config(openai_api_key="k", minimax_base_url="http://mm.test/v1")

    assert set(config.endpoints) == {"openai", "minimax", "ollama"}
    assert config.endpoints["openai"].base_url == "https://api.openai.com/v1"
    assert config.endpoints["minimax"].base_url == "http://mm.test/v1"


def test_default_base_urls() -> None:
    config = build_provider_config(anthropic_api_key="a", minimax_api_key="m")

    assert config.endpoints["anthropic"].base_url == "https://api.anthropic.com"
    assert config.endpoints["minimax"].base_url == "https://api.minimax.io/v1"


def test_api_key_never_shows_in_a_repr() -> None:
    config = build_provider_config(openai_api_key=OPENAI_KEY, anthropic_api_key=ANTHROPIC_KEY)

    assert OPENAI_KEY not in repr(config)
    assert ANTHROPIC_KEY not in repr(config)


def test_reasoning_blocks_are_stripped_even_when_unclosed() -> None:
    assert strip_reasoning("<think>a</think>\nB<think>c</think>D") == "BD"
    assert strip_reasoning("A<think>never closed") == "A"
    assert strip_reasoning("no reasoning") == "no reasoning"


def test_echo_answers_with_a_file_block_and_word_counts() -> None:
    request = ChatRequest.from_prompt("write three words", system="be kind")

    response = answer_offline("echo/echo", request)

    assert response.text == '<file path="answer.md">\nwrite three words\n</file>\n'
    assert (response.prompt_tokens, response.completion_tokens) == (5, 3)
    assert answer_offline("echo/echo", request) == response


def test_echo_defangs_file_tags_quoted_in_its_prompt() -> None:
    prompt = 'Earlier:\n<file path="x.md">\nold\n</file>'

    text = answer_offline("echo/echo", ChatRequest.from_prompt(prompt)).text

    assert text.count("<file ") == 1
    assert text.count("</file>") == 1


def test_recorded_request_bodies_are_json(fake_llm: FakeLLMServer) -> None:
    response = httpx.post(
        f"{fake_llm.openai_base_url}/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
        trust_env=False,
    )

    body: dict[str, Any] = response.json()
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert json.dumps(fake_llm.requests("m")[0].to_dict())


async def test_streamed_answer_without_a_length_is_cut_off_at_the_cap() -> None:
    sent: list[int] = []

    async def endless_body() -> AsyncIterator[bytes]:
        yield b'{"choices": [{"message": {"content": "'
        for _ in range(10_000):  # 640 MB, if anybody read it all
            sent.append(1)
            yield b"z" * 65536

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=endless_body()))
    config = ProviderConfig(endpoints={"openai": Endpoint("https://example.test/v1", "k")})
    provider = build_providers(config, max_response_bytes=2**20)["openai"]

    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(ResponseTooLargeError, match="larger than 1 MiB"):
            await provider.complete(
                client,
                "openai/gpt-x",
                "gpt-x",
                REQUEST,
                http_timeout=httpx.Timeout(5.0),
                clock=time.time,
            )

    assert len(sent) <= 17  # 1 MiB and a chunk, not the whole stream


async def test_provider_message_is_escaped_and_shortened() -> None:
    message = "bad \x1b[2J\u202eevil " + "w" * 5000
    transport = httpx.MockTransport(
        lambda request: httpx.Response(400, json={"error": {"message": message}})
    )
    config = ProviderConfig(endpoints={"openai": Endpoint("https://example.test/v1", "k")})

    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(BadRequestError) as caught:
            await ask(config, client, "openai/gpt-x")

    detail = caught.value.detail or ""
    assert detail.startswith("bad \\u001b[2J\\u202eevil ")
    assert len(detail) < 400
    assert "\x1b" not in str(caught.value) and "\u202e" not in str(caught.value)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("::1", "http://[::1]:11434/v1"),
        ("http://::1", "http://[::1]/v1"),
        ("[::1]", "http://[::1]:11434/v1"),
        ("::", "http://127.0.0.1:11434/v1"),
    ],
)
def test_ollama_host_as_a_bare_ipv6_address(host: str, expected: str) -> None:
    assert ollama_base_url(host) == expected
