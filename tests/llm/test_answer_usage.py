"""What an answer says of itself: the prompt cache's tokens and their price, and a cut at the
token limit."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from swarmd.llm.provider_config import Endpoint, ProviderConfig
from swarmd.llm.router import build_providers
from swarmd.llm.types import ChatRequest, ChatResponse

REQUEST = ChatRequest.from_prompt("Write the page")
PRICE = (3.0, 15.0)  # usd per million input and output tokens


def anthropic_answer(usage: dict[str, Any], stop_reason: str = "end_turn") -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "done"}],
        "stop_reason": stop_reason,
        "usage": usage,
    }


def openai_answer(finish_reason: str) -> dict[str, Any]:
    return {
        "choices": [
            {"message": {"role": "assistant", "content": "done"}, "finish_reason": finish_reason}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
    }


async def answer(model: str, body: dict[str, Any], config: ProviderConfig) -> ChatResponse:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    provider = build_providers(config)[config.provider_name(model)]
    async with httpx.AsyncClient(transport=transport) as client:
        return await provider.complete(
            client,
            model,
            model.partition("/")[2],
            REQUEST,
            http_timeout=httpx.Timeout(5.0),
            clock=time.time,
        )


@pytest.fixture
def config() -> ProviderConfig:
    return ProviderConfig(
        endpoints={
            "anthropic": Endpoint("https://anthropic.test", "k"),
            "openai": Endpoint("https://openai.test/v1", "k"),
        },
        prices={"anthropic/claude-x": PRICE, "openai/gpt-x": PRICE},
    )


async def test_anthropic_prompt_tokens_count_the_cache_writes_and_reads(
    config: ProviderConfig,
) -> None:
    usage = {
        "input_tokens": 12,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 4000,
        "output_tokens": 50,
    }

    response = await answer("anthropic/claude-x", anthropic_answer(usage), config)

    assert response.prompt_tokens == 12 + 1000 + 4000
    assert response.cache_creation_tokens == 1000
    assert response.cache_read_tokens == 4000
    assert response.completion_tokens == 50


async def test_anthropic_cache_is_priced_at_125_percent_to_write_and_10_percent_to_read(
    config: ProviderConfig,
) -> None:
    usage = {
        "input_tokens": 12,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 4000,
        "output_tokens": 50,
    }

    response = await answer("anthropic/claude-x", anthropic_answer(usage), config)

    per_input, per_output = PRICE
    expected = (12 + 1000 * 1.25 + 4000 * 0.1) * per_input + 50 * per_output
    assert config.cost_of(response) == pytest.approx(expected / 1e6)


async def test_anthropic_one_hour_cache_writes_are_priced_at_twice_the_input(
    config: ProviderConfig,
) -> None:
    usage = {
        "input_tokens": 0,
        "cache_creation_input_tokens": 1000,
        "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 600},
        "output_tokens": 0,
    }

    response = await answer("anthropic/claude-x", anthropic_answer(usage), config)

    assert response.cache_creation_1h_tokens == 600
    assert config.cost_of(response) == pytest.approx((400 * 1.25 + 600 * 2.0) * 3.0 / 1e6)


async def test_answer_without_a_cache_costs_what_it_did(config: ProviderConfig) -> None:
    usage = {"input_tokens": 100, "output_tokens": 20}

    response = await answer("anthropic/claude-x", anthropic_answer(usage), config)

    assert (response.cache_creation_tokens, response.cache_read_tokens) == (0, 0)
    assert config.cost_of(response) == pytest.approx((100 * 3.0 + 20 * 15.0) / 1e6)


async def test_cost_is_none_for_a_model_without_a_price() -> None:
    config = ProviderConfig(endpoints={"anthropic": Endpoint("https://anthropic.test", "k")})
    usage = {"input_tokens": 1, "cache_read_input_tokens": 9, "output_tokens": 1}

    response = await answer("anthropic/claude-x", anthropic_answer(usage), config)

    assert response.prompt_tokens == 10
    assert config.cost_of(response) is None


@pytest.mark.parametrize(
    ("model", "body", "truncated"),
    [
        ("openai/gpt-x", openai_answer("length"), True),
        ("openai/gpt-x", openai_answer("stop"), False),
        ("anthropic/claude-x", anthropic_answer({}, "max_tokens"), True),
        ("anthropic/claude-x", anthropic_answer({}, "end_turn"), False),
        ("anthropic/claude-x", anthropic_answer({}, "length"), False),
    ],
)
async def test_answer_cut_at_the_token_limit_says_so(
    config: ProviderConfig, model: str, body: dict[str, Any], truncated: bool
) -> None:
    response = await answer(model, body, config)

    assert response.truncated is truncated
    assert response.raw_finish_reason in ("length", "stop", "max_tokens", "end_turn")


async def test_finish_reason_that_is_not_a_string_is_dropped(config: ProviderConfig) -> None:
    body = openai_answer("stop")
    body["choices"][0]["finish_reason"] = {"odd": True}

    response = await answer("openai/gpt-x", body, config)

    assert response.raw_finish_reason is None
    assert not response.truncated
