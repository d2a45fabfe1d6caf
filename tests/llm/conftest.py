"""Fixtures for the LLM layer: the loopback fake provider, a client, and injected time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from swarmd.llm.limits import CooldownTable, RateLimiter
from swarmd.llm.permits import LocalBroker
from swarmd.llm.providers import Endpoint, ProviderConfig, build_provider_config
from tests.support.fake_llm import FakeLLMServer

START = 1_700_000_000.0


class FakeTime:
    """A wall clock that moves only when someone sleeps on it."""

    def __init__(self, now: float = START) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def broker(fake_time: FakeTime) -> LocalBroker:
    return LocalBroker(RateLimiter(6000), CooldownTable(), clock=fake_time, sleep=fake_time.sleep)


OPENAI_KEY = "sk-test-openai-7c1d5e9f0a2b4c6d"
ANTHROPIC_KEY = "sk-ant-test-3e8a1b7c9d2f4a6b"
MINIMAX_KEY = "mm-test-5b2c8d1e7f3a9c4d"


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
