"""Fixtures for the LLM layer: the loopback fake provider, a client, and injected time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from swarmd.llm.limits import CooldownTable, RateLimiter
from swarmd.llm.permits import LocalBroker
from swarmd.llm.provider_config import Endpoint, ProviderConfig, build_provider_config
from tests.support.clock import FakeClock
from tests.support.fake_llm import FakeLLMServer
from tests.support.llm_keys import ANTHROPIC_KEY, MINIMAX_KEY, OPENAI_KEY


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


@pytest.fixture
def fake_time() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(fake_time: FakeClock) -> LocalBroker:
    return LocalBroker(RateLimiter(6000), CooldownTable(), clock=fake_time, sleep=fake_time.sleep)


@pytest.fixture
def provider_config(fake_llm: FakeLLMServer) -> ProviderConfig:
    """Every provider pointed at the fake server, each with its own key."""
    return build_provider_config(
        openai_api_key=OPENAI_KEY,
        openai_base_url=fake_llm.openai_base_url,
        anthropic_api_key=ANTHROPIC_KEY,
        anthropic_base_url=fake_llm.anthropic_base_url,
        minimax_api_key=MINIMAX_KEY,
        minimax_base_url=fake_llm.minimax_base_url,
        ollama_host=fake_llm.url,
        extra={"vllm": Endpoint(fake_llm.openai_base_url)},
        aliases={"openai-codex": "openai"},
        prices={"openai/priced": (2.0, 8.0)},
    )
