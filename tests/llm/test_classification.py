"""Every failure a provider can answer, classified against the real loopback server."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from swarmd.llm.errors import (
    AuthenticationError,
    BadRequestError,
    Disposition,
    MalformedResponseError,
    ModelCallError,
    ModelNotFoundError,
    OverloadedError,
    QuotaExhaustedError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    UnreachableError,
)
from swarmd.llm.provider_config import Endpoint, ProviderConfig
from swarmd.llm.providers import Provider
from swarmd.llm.router import build_providers
from swarmd.llm.types import ChatRequest, ChatResponse
from tests.support.fake_llm import FakeLLMServer, Fault
from tests.support.llm_keys import ANTHROPIC_KEY, MINIMAX_KEY, OPENAI_KEY

REQUEST = ChatRequest.from_prompt("Write a haiku about queues", system="Be brief.")
QUICK = httpx.Timeout(5.0)


async def ask(
    config: ProviderConfig,
    client: httpx.AsyncClient,
    model: str,
    *,
    http_timeout: httpx.Timeout = QUICK,
) -> ChatResponse:
    provider: Provider = build_providers(config)[config.provider_name(model)]
    name = model.partition("/")[2]
    return await provider.complete(
        client, model, name, REQUEST, http_timeout=http_timeout, clock=time.time
    )


async def failure_of(
    config: ProviderConfig,
    client: httpx.AsyncClient,
    model: str,
    *,
    http_timeout: httpx.Timeout = QUICK,
) -> ModelCallError:
    with pytest.raises(ModelCallError) as caught:
        await ask(config, client, model, http_timeout=http_timeout)
    return caught.value


CASES = [
    ("openai/m", Fault.rate_limited(retry_after=7), RateLimitedError, 429),
    ("openai/m", Fault.rate_limited(), RateLimitedError, 429),
    ("anthropic/m", Fault.rate_limited(retry_after=3), RateLimitedError, 429),
    ("openai/m", Fault.insufficient_quota(), QuotaExhaustedError, 429),
    ("openai/m", Fault.http(500), ServerError, 500),
    ("openai/m", Fault.http(503), ServerError, 503),
    ("openai/m", Fault.http(408), ServerError, 408),
    ("anthropic/m", Fault.http(529), OverloadedError, 529),
    ("anthropic/m", Fault.http(500), ServerError, 500),
    ("openai/m", Fault.http(401), AuthenticationError, 401),
    ("anthropic/m", Fault.http(401), AuthenticationError, 401),
    ("openai/m", Fault.http(403), AuthenticationError, 403),
    ("openai/m", Fault.http(404), ModelNotFoundError, 404),
    ("anthropic/m", Fault.http(404), ModelNotFoundError, 404),
    ("openai/m", Fault.http(400), BadRequestError, 400),
    ("anthropic/m", Fault.http(400), BadRequestError, 400),
    ("openai/m", Fault.http(422), BadRequestError, 422),
    ("openai/m", Fault.malformed(), MalformedResponseError, 200),
    ("anthropic/m", Fault.malformed(), MalformedResponseError, 200),
    ("openai/m", Fault.truncated(), MalformedResponseError, None),
    ("anthropic/m", Fault.truncated(), MalformedResponseError, None),
    ("openai/m", Fault.disconnect(), MalformedResponseError, None),
    ("minimax/m", Fault.minimax(1002, "rate limit"), RateLimitedError, 200),
    ("minimax/m", Fault.minimax(1004, "not authorized"), AuthenticationError, 200),
    ("minimax/m", Fault.minimax(2049, "invalid api key"), AuthenticationError, 200),
    ("minimax/m", Fault.minimax(1008, "insufficient balance"), QuotaExhaustedError, 200),
    ("minimax/m", Fault.minimax(1000, "unknown error"), ServerError, 200),
    ("minimax/m", Fault.minimax(1024, "internal error"), ServerError, 200),
    ("minimax/m", Fault.minimax(2013, "invalid params"), BadRequestError, 200),
    ("minimax/m", Fault.http(500), ServerError, 500),
    ("ollama/m", Fault.http(500), ServerError, 500),
    ("vllm/m", Fault.http(404), ModelNotFoundError, 404),
]


@pytest.mark.parametrize(
    ("model", "fault", "expected", "status"),
    CASES,
    ids=[
        f"{model.split('/')[0]}-{fault.kind}-{fault.status}-{fault.minimax_code}-{i}"
        for i, (model, fault, _, _) in enumerate(CASES)
    ],
)
async def test_failure_is_classified(
    *,
    fake_llm: FakeLLMServer,
    provider_config: ProviderConfig,
    http_client: httpx.AsyncClient,
    model: str,
    fault: Fault,
    expected: type[ModelCallError],
    status: int | None,
) -> None:
    fake_llm.script("m", fault)

    error = await failure_of(provider_config, http_client, model)

    assert type(error) is expected
    assert error.status == status
    assert error.model == model


@pytest.mark.parametrize(
    ("error_type", "disposition"),
    [
        (RateLimitedError, Disposition.RETRY),
        (ServerError, Disposition.RETRY),
        (OverloadedError, Disposition.RETRY),
        (RequestTimeoutError, Disposition.RETRY),
        (UnreachableError, Disposition.RETRY),
        (MalformedResponseError, Disposition.RETRY),
        (QuotaExhaustedError, Disposition.NEXT),
        (AuthenticationError, Disposition.NEXT),
        (ModelNotFoundError, Disposition.NEXT),
        (BadRequestError, Disposition.STOP),
    ],
)
def test_each_failure_kind_has_its_disposition(
    error_type: type[ModelCallError], disposition: Disposition
) -> None:
    assert error_type("openai/m", "x").disposition is disposition


async def test_rate_limit_carries_its_retry_after(
    fake_llm: FakeLLMServer, provider_config: ProviderConfig, http_client: httpx.AsyncClient
) -> None:
    fake_llm.script("m", Fault.rate_limited(retry_after=7))

    error = await failure_of(provider_config, http_client, "openai/m")

    assert error.retry_after == 7.0


async def test_rate_limit_without_retry_after_has_none(
    fake_llm: FakeLLMServer, provider_config: ProviderConfig, http_client: httpx.AsyncClient
) -> None:
    fake_llm.script("m", Fault.rate_limited())

    error = await failure_of(provider_config, http_client, "openai/m")

    assert error.retry_after is None


async def test_answer_slower_than_the_read_timeout_is_a_timeout(
    fake_llm: FakeLLMServer, provider_config: ProviderConfig, http_client: httpx.AsyncClient
) -> None:
    fake_llm.script("m", Fault.slow(30.0))

    error = await failure_of(
        provider_config, http_client, "openai/m", http_timeout=httpx.Timeout(5.0, read=0.2)
    )

    assert isinstance(error, RequestTimeoutError)
    assert error.disposition is Disposition.RETRY


async def test_nothing_listening_is_unreachable(http_client: httpx.AsyncClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = ProviderConfig(endpoints={"openai": Endpoint(f"http://127.0.0.1:{port}/v1", "k")})

    error = await failure_of(config, http_client, "openai/m")

    assert isinstance(error, UnreachableError)
    assert error.disposition is Disposition.RETRY


async def test_anthropic_out_of_credit_is_quota_not_a_bad_request(
    fake_llm: FakeLLMServer, provider_config: ProviderConfig, http_client: httpx.AsyncClient
) -> None:
    message = "Your credit balance is too low to access the Anthropic API."
    fake_llm.script("m", Fault.http(400, message=message))

    error = await failure_of(provider_config, http_client, "anthropic/m")

    assert isinstance(error, QuotaExhaustedError)
    assert error.disposition is Disposition.NEXT


async def test_provider_message_is_kept_in_the_description(
    fake_llm: FakeLLMServer, provider_config: ProviderConfig, http_client: httpx.AsyncClient
) -> None:
    fake_llm.script("m", Fault.http(500, message="The engine fell over."))

    error = await failure_of(provider_config, http_client, "openai/m")

    assert error.description == "HTTP 500 server error (The engine fell over.)"
    assert str(error) == "openai/m: HTTP 500 server error (The engine fell over.)"


@pytest.mark.parametrize(
    ("model", "key", "fault"),
    [
        ("openai/m", OPENAI_KEY, Fault.http(401)),
        ("anthropic/m", ANTHROPIC_KEY, Fault.http(401)),
        ("openai/m", OPENAI_KEY, Fault.http(500, message="upstream saw key {api_key}")),
        ("anthropic/m", ANTHROPIC_KEY, Fault.http(429, message="limit for {api_key}")),
        ("minimax/m", MINIMAX_KEY, Fault.minimax(1000, "bad key " + MINIMAX_KEY)),
        ("minimax/m", MINIMAX_KEY, Fault.minimax(2049, "invalid api key " + MINIMAX_KEY)),
    ],
)
async def test_api_key_never_appears_in_an_error(
    *,
    fake_llm: FakeLLMServer,
    provider_config: ProviderConfig,
    http_client: httpx.AsyncClient,
    model: str,
    key: str,
    fault: Fault,
) -> None:
    fake_llm.script("m", fault)

    error = await failure_of(provider_config, http_client, model)

    assert fake_llm.requests("m"), "the request reached the server"
    assert key not in str(error)
    assert key not in repr(error.args)
    assert key not in error.description
