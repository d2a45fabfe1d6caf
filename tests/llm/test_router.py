"""The router over the real loopback server, with injected time: retries, fallbacks,
shared cool-downs and the one budget per task."""

from __future__ import annotations

import email.utils
import random
from typing import Any

import httpx
import pytest

from swarmd.errors import ProviderError
from swarmd.llm.errors import AllModelsFailedError, RequestRejectedError
from swarmd.llm.limits import CooldownTable, RateLimiter
from swarmd.llm.permits import LocalBroker
from swarmd.llm.provider_config import ProviderConfig
from swarmd.llm.router import RequestTimeouts, Router
from swarmd.llm.types import ChatRequest, Outcome
from tests.support.clock import FakeClock
from tests.support.fake_llm import FakeLLMServer, Fault
from tests.support.llm_keys import ANTHROPIC_KEY, OPENAI_KEY

REQUEST = ChatRequest.from_prompt("Write the landing page copy")
BUDGET = 600.0


@pytest.fixture
def make_router(
    provider_config: ProviderConfig,
    broker: LocalBroker,
    http_client: httpx.AsyncClient,
    fake_time: FakeClock,
) -> Any:
    def make(**options: Any) -> Router:
        options.setdefault("rng", random.Random(7))
        return Router(
            http_client,
            provider_config,
            options.pop("broker", broker),
            clock=fake_time,
            sleep=fake_time.sleep,
            **options,
        )

    return make


def deadline(fake_time: FakeClock, budget: float = BUDGET) -> float:
    return fake_time.now + budget


async def test_primary_answers_when_healthy(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    result = await make_router().complete(
        REQUEST, ["openai/a", "anthropic/b"], deadline=deadline(fake_time)
    )

    assert result.response.model == "openai/a"
    assert "a answers: Write the landing page copy" in result.response.text
    assert [t.outcome for t in result.tries] == ["ok"]
    assert fake_llm.count("b") == 0


async def test_fallback_answers_when_primary_keeps_failing_with_500(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    fake_llm.script("a", default=Fault.http(500))

    result = await make_router(max_retries_per_model=3).complete(
        REQUEST, ["openai/a", "anthropic/b"], deadline=deadline(fake_time)
    )

    assert result.response.model == "anthropic/b"
    assert [t.outcome for t in result.tries] == ["server_error"] * 4 + ["ok"]
    assert fake_llm.count("a") == 4


async def test_retries_of_a_failing_model_back_off_exponentially(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    fake_llm.script("a", default=Fault.http(500))

    await make_router(max_retries_per_model=3, backoff_base=1.0).complete(
        REQUEST, ["openai/a", "anthropic/b"], deadline=deadline(fake_time)
    )

    first, second, third = fake_time.sleeps
    assert 0.5 <= first <= 1.0
    assert 1.0 <= second <= 2.0
    assert 2.0 <= third <= 4.0


async def test_fallback_answers_when_primary_is_overloaded(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    fake_llm.script("a", default=Fault.http(529))

    result = await make_router(max_retries_per_model=1).complete(
        REQUEST, ["anthropic/a", "openai/b"], deadline=deadline(fake_time)
    )

    assert result.response.model == "openai/b"
    assert [t.outcome for t in result.tries] == ["overloaded", "overloaded", "ok"]


async def test_rate_limited_primary_hands_over_to_fallback_at_once(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock, broker: LocalBroker
) -> None:
    fake_llm.script("a", Fault.rate_limited(retry_after=20))

    result = await make_router().complete(
        REQUEST, ["openai/a", "anthropic/b"], deadline=deadline(fake_time)
    )

    assert result.response.model == "anthropic/b"
    assert fake_llm.count("a") == 1
    assert fake_time.sleeps == []
    assert broker.cooling_until("openai/a") == fake_time.now + 20


async def test_rate_limited_primary_is_asked_again_when_its_cooldown_ends(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    fake_llm.script("a", Fault.rate_limited(retry_after=5))
    fake_llm.script("b", default=Fault.http(500))

    result = await make_router(backoff_base=2.0).complete(
        REQUEST, ["openai/a", "anthropic/b"], deadline=deadline(fake_time)
    )

    assert result.response.model == "openai/a"
    assert fake_llm.count("a") == 2
    assert fake_llm.count("b") >= 1


async def test_without_fallback_on_rate_limit_primary_is_retried_after_its_retry_after(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    fake_llm.script("a", Fault.rate_limited(retry_after=7))

    result = await make_router(fallback_on_rate_limit=False).complete(
        REQUEST, ["openai/a", "anthropic/b"], deadline=deadline(fake_time)
    )

    assert result.response.model == "openai/a"
    assert fake_time.sleeps == [7.0]
    assert fake_llm.count("b") == 0


async def test_retry_after_is_capped(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    fake_llm.script("a", Fault.rate_limited(retry_after=3600))

    await make_router(fallback_on_rate_limit=False, retry_after_cap=45.0).complete(
        REQUEST, ["openai/a"], deadline=deadline(fake_time)
    )

    assert fake_time.sleeps == [45.0]


async def test_retry_after_given_as_http_date_is_honoured(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    when = email.utils.formatdate(fake_time.now + 12, usegmt=True)
    fake_llm.script("a", Fault.rate_limited(retry_after=when))

    await make_router(fallback_on_rate_limit=False).complete(
        REQUEST, ["openai/a"], deadline=deadline(fake_time)
    )

    assert fake_time.sleeps == [12.0]


async def test_every_model_failing_raises_an_error_naming_what_each_answered(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    fake_llm.script("a", default=Fault.http(500, message="boom"))
    fake_llm.script("b", default=Fault.http(529))

    with pytest.raises(AllModelsFailedError) as caught:
        await make_router(max_retries_per_model=1).complete(
            REQUEST, ["openai/a", "anthropic/b"], deadline=deadline(fake_time)
        )

    assert str(caught.value) == (
        "every model failed: openai/a: HTTP 500 server error (boom); "
        "anthropic/b: HTTP 529 overloaded (Overloaded)"
    )
    assert len(caught.value.tries) == 4
    assert isinstance(caught.value, ProviderError)


async def test_model_cooled_by_one_worker_gets_no_request_from_another(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    fake_llm.script("a", default=Fault.insufficient_quota())
    first_worker, second_worker = make_router(), make_router()
    await first_worker.complete(REQUEST, ["openai/a", "anthropic/b"], deadline=deadline(fake_time))

    result = await second_worker.complete(
        REQUEST, ["openai/a", "anthropic/b"], deadline=deadline(fake_time)
    )

    assert result.response.model == "anthropic/b"
    assert [t.model for t in result.tries] == ["anthropic/b"]
    assert fake_llm.count("a") == 1


async def test_all_models_cooling_waits_for_the_earliest_within_the_deadline(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock, broker: LocalBroker
) -> None:
    broker.cooldowns.cool("openai/a", fake_time.now + 30)
    broker.cooldowns.cool("anthropic/b", fake_time.now + 10)

    result = await make_router().complete(
        REQUEST, ["openai/a", "anthropic/b"], deadline=deadline(fake_time, 60)
    )

    assert fake_time.sleeps == [10.0]
    assert result.response.model == "anthropic/b"


async def test_all_models_cooling_past_the_deadline_fails_without_a_request(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock, broker: LocalBroker
) -> None:
    broker.cooldowns.cool("openai/a", fake_time.now + 100, "rate_limited")
    broker.cooldowns.cool("anthropic/b", fake_time.now + 200, "quota_exhausted")

    with pytest.raises(AllModelsFailedError) as caught:
        await make_router().complete(
            REQUEST, ["openai/a", "anthropic/b"], deadline=deadline(fake_time, 60)
        )

    assert caught.value.budget_spent
    assert str(caught.value) == (
        "no model answered before the deadline: "
        "openai/a: cooling down for 100s more after rate_limited; "
        "anthropic/b: cooling down for 200s more after quota_exhausted"
    )
    assert fake_llm.count() == 0
    assert fake_time.sleeps == []


async def test_bad_request_stops_without_trying_the_fallback(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    fake_llm.script("a", Fault.http(400, message="messages: field required"))

    with pytest.raises(RequestRejectedError) as caught:
        await make_router().complete(
            REQUEST, ["openai/a", "anthropic/b"], deadline=deadline(fake_time)
        )

    assert str(caught.value) == (
        "openai/a refused the request: HTTP 400 bad request (messages: field required)"
    )
    assert fake_llm.count("b") == 0
    assert [t.outcome for t in caught.value.tries] == ["bad_request"]


async def test_minimax_error_inside_http_200_is_retried(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    fake_llm.script("m", Fault.minimax(1000, "unknown error"))

    result = await make_router().complete(REQUEST, ["minimax/m"], deadline=deadline(fake_time))

    assert result.response.model == "minimax/m"
    assert [(t.outcome, t.status) for t in result.tries] == [("server_error", 200), ("ok", 200)]


@pytest.mark.parametrize(
    "fault", [Fault.truncated(), Fault.malformed()], ids=["truncated", "malformed"]
)
async def test_broken_body_is_retried(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock, fault: Fault
) -> None:
    fake_llm.script("a", fault)

    result = await make_router().complete(REQUEST, ["openai/a"], deadline=deadline(fake_time))

    assert result.response.model == "openai/a"
    assert [t.outcome for t in result.tries] == ["malformed", "ok"]


async def test_timed_out_request_is_retried(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    fake_llm.script("a", Fault.slow(30.0))

    # The second, healthy answer must also arrive within the read timeout: keep a margin
    # for a loaded machine.
    result = await make_router(timeouts=RequestTimeouts(connect=5, read=1.0, total=5)).complete(
        REQUEST, ["openai/a"], deadline=deadline(fake_time)
    )

    assert [t.outcome for t in result.tries] == ["timeout", "ok"]


async def test_whole_request_timeout_bounds_a_trickling_answer(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    fake_llm.script("a", Fault.slow(30.0))

    result = await make_router(timeouts=RequestTimeouts(connect=5, read=60, total=1.0)).complete(
        REQUEST, ["openai/a"], deadline=deadline(fake_time)
    )

    assert [t.outcome for t in result.tries] == ["timeout", "ok"]
    assert result.tries[0].error == "no answer within 1.0s"


async def test_retry_that_would_land_past_the_deadline_gives_up_in_budget(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    fake_llm.script("a", default=Fault.http(500))

    with pytest.raises(AllModelsFailedError) as caught:
        await make_router(backoff_base=10.0).complete(
            REQUEST, ["openai/a"], deadline=deadline(fake_time, 4)
        )

    assert caught.value.budget_spent
    assert fake_llm.count("a") == 1
    assert fake_time.sleeps == []


async def test_model_that_exhausts_its_retries_cools_down_for_everybody(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock, broker: LocalBroker
) -> None:
    fake_llm.script("a", default=Fault.http(500))

    await make_router(max_retries_per_model=1, cooldown_s=90).complete(
        REQUEST, ["openai/a", "anthropic/b"], deadline=deadline(fake_time)
    )

    assert broker.cooling_until("openai/a") == pytest.approx(fake_time.now + 90)


async def test_outcomes_are_reported_to_the_broker(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock, broker: LocalBroker
) -> None:
    fake_llm.script("a", Fault.http(401))

    await make_router().complete(REQUEST, ["openai/a", "anthropic/b"], deadline=deadline(fake_time))

    status = broker.snapshot()
    assert status["openai/a"]["errors_last_minute"] == 1
    assert status["openai/a"]["last_error"] == "HTTP 401 authentication failed"
    assert status["openai/a"]["cooling_until"] == fake_time.now + 60
    assert status["anthropic/b"]["requests_last_minute"] == 1
    assert status["anthropic/b"]["errors_last_minute"] == 0


async def test_each_request_waits_for_a_rate_limit_permit(
    provider_config: ProviderConfig,
    http_client: httpx.AsyncClient,
    fake_llm: FakeLLMServer,
    fake_time: FakeClock,
) -> None:
    broker = LocalBroker(
        RateLimiter(2, guard=0.0), CooldownTable(), clock=fake_time, sleep=fake_time.sleep
    )
    router = Router(http_client, provider_config, broker, clock=fake_time, sleep=fake_time.sleep)

    for _ in range(3):
        await router.complete(REQUEST, ["openai/a"], deadline=deadline(fake_time))

    assert fake_time.sleeps == [30.0, 30.0]


async def test_api_key_never_appears_in_the_failure_or_its_tries(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock, broker: LocalBroker
) -> None:
    fake_llm.script("a", default=Fault.http(401))
    fake_llm.script("b", default=Fault.http(500, message="key {api_key} looked odd"))

    with pytest.raises(AllModelsFailedError) as caught:
        await make_router(max_retries_per_model=0).complete(
            REQUEST, ["openai/a", "anthropic/b"], deadline=deadline(fake_time)
        )

    seen = [str(caught.value), repr(caught.value.tries), repr(broker.snapshot())]
    assert fake_llm.requests("b")[0].headers["x-api-key"] == ANTHROPIC_KEY
    for text in seen:
        assert OPENAI_KEY not in text
        assert ANTHROPIC_KEY not in text


async def test_cost_comes_from_configured_prices(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    result = await make_router().complete(REQUEST, ["openai/priced"], deadline=deadline(fake_time))

    usage = result.response
    expected = (usage.prompt_tokens * 2.0 + usage.completion_tokens * 8.0) / 1e6
    assert result.cost_usd == pytest.approx(expected)
    assert expected > 0


async def test_cost_is_none_without_a_price(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    result = await make_router().complete(REQUEST, ["openai/a"], deadline=deadline(fake_time))

    assert result.cost_usd is None


async def test_alias_is_served_by_its_provider(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    result = await make_router().complete(
        REQUEST, ["openai-codex/gpt-x"], deadline=deadline(fake_time)
    )

    assert result.response.model == "openai-codex/gpt-x"
    sent = fake_llm.requests("gpt-x")[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"


async def test_unconfigured_provider_is_named_and_skipped(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    result = await make_router().complete(
        REQUEST, ["nowhere/m", "openai/a"], deadline=deadline(fake_time)
    )

    assert result.response.model == "openai/a"
    assert result.tries[0].outcome == "not_configured"
    assert result.tries[0].error == "no provider named 'nowhere' is configured"


async def test_echo_model_answers_offline_through_the_router(
    provider_config: ProviderConfig, broker: LocalBroker, fake_time: FakeClock
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError("the echo model touched the network")

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        router = Router(client, provider_config, broker, clock=fake_time, sleep=fake_time.sleep)
        result = await router.complete(REQUEST, ["echo/echo"], deadline=deadline(fake_time))

    assert result.response.text == '<file path="answer.md">\nWrite the landing page copy\n</file>\n'
    assert result.tries[0].outcome == "ok"


async def test_empty_chain_is_refused(make_router: Any, fake_time: FakeClock) -> None:
    with pytest.raises(ProviderError, match="the model chain is empty"):
        await make_router().complete(REQUEST, [], deadline=deadline(fake_time))


def test_outcome_survives_a_json_round_trip() -> None:
    outcome = Outcome(ok=False, status=429, disposition="retry", retry_after=3.0, cool_until=9.0)

    assert Outcome.from_dict(outcome.to_dict()) == outcome


# -- answers past the size cap -----------------------------------------------------------------


async def test_answer_past_the_size_cap_moves_on_to_the_next_model(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    fake_llm.script("a", default=Fault.ok("x" * 300_000))

    result = await make_router(max_response_bytes=100_000).complete(
        REQUEST, ["openai/a", "anthropic/b"], deadline=deadline(fake_time)
    )

    assert result.response.model == "anthropic/b"
    assert [(t.model, t.outcome) for t in result.tries] == [
        ("openai/a", "too_large"),
        ("anthropic/b", "ok"),
    ]
    assert result.tries[0].error == (
        "the answer is larger than 100,000 bytes, the most swarmd reads of one answer"
    )
    assert fake_llm.count("a") == 1  # not asked again: the same answer would come back


async def test_answer_past_the_size_cap_of_a_lone_model_fails_naming_the_cap(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    fake_llm.script("a", default=Fault.ok("x" * (2 * 2**20)))

    with pytest.raises(AllModelsFailedError) as caught:
        await make_router(max_response_bytes=2**20).complete(
            REQUEST, ["openai/a"], deadline=deadline(fake_time)
        )

    assert "openai/a: the answer is larger than 1 MiB" in str(caught.value)


async def test_answer_within_the_size_cap_is_read_whole(
    make_router: Any, fake_llm: FakeLLMServer, fake_time: FakeClock
) -> None:
    fake_llm.script("a", default=Fault.ok("y" * 50_000))

    result = await make_router(max_response_bytes=100_000).complete(
        REQUEST, ["openai/a"], deadline=deadline(fake_time)
    )

    assert result.response.text == "y" * 50_000
