"""The in-process permit broker: permits, refusals, reports, and their JSON form."""

from __future__ import annotations

import pytest

from swarmd.llm.errors import BudgetExceededError, ModelCoolingError
from swarmd.llm.limits import CooldownTable, RateLimiter
from swarmd.llm.permits import LocalBroker, raise_refusal, refusal_to_dict
from swarmd.llm.types import Outcome
from tests.support.clock import FakeClock


def make_broker(fake_time: FakeClock, rpm: int = 2) -> LocalBroker:
    limiter = RateLimiter(rpm, guard=0.0)
    return LocalBroker(limiter, CooldownTable(), clock=fake_time, sleep=fake_time.sleep)


async def test_permit_is_granted_at_once_when_the_limit_allows(fake_time: FakeClock) -> None:
    broker = make_broker(fake_time)

    await broker.acquire("openai/a", deadline=fake_time.now + 60)

    assert fake_time.sleeps == []


async def test_permit_waits_its_turn_under_the_limit(fake_time: FakeClock) -> None:
    broker = make_broker(fake_time, rpm=2)
    await broker.acquire("openai/a", deadline=fake_time.now + 60)

    await broker.acquire("openai/b", deadline=fake_time.now + 60)

    assert fake_time.sleeps == [30.0]


async def test_cooling_model_is_refused_with_its_cooldown_end(fake_time: FakeClock) -> None:
    broker = make_broker(fake_time)
    broker.cooldowns.cool("openai/a", fake_time.now + 42, "rate_limited")

    with pytest.raises(ModelCoolingError) as caught:
        await broker.acquire("openai/a", deadline=fake_time.now + 60)

    assert caught.value.until == fake_time.now + 42
    assert caught.value.reason == "rate_limited"


async def test_permit_past_the_deadline_is_refused_and_reserves_nothing(
    fake_time: FakeClock,
) -> None:
    broker = make_broker(fake_time, rpm=2)
    await broker.acquire("openai/a", deadline=fake_time.now + 60)

    with pytest.raises(BudgetExceededError):
        await broker.acquire("openai/a", deadline=fake_time.now + 10)
    await broker.acquire("openai/a", deadline=fake_time.now + 60)

    assert fake_time.sleeps == [30.0]


async def test_model_cooled_while_waiting_for_a_permit_is_refused(fake_time: FakeClock) -> None:
    broker = make_broker(fake_time, rpm=2)
    await broker.acquire("openai/a", deadline=fake_time.now + 60)

    async def cool_during_the_wait(seconds: float) -> None:
        fake_time.now += seconds
        broker.cooldowns.cool("openai/a", fake_time.now + 5, "rate_limited")

    waiting = LocalBroker(
        broker.limiter, broker.cooldowns, clock=fake_time, sleep=cool_during_the_wait
    )
    with pytest.raises(ModelCoolingError):
        await waiting.acquire("openai/a", deadline=fake_time.now + 60)


async def test_providers_do_not_share_a_bucket(fake_time: FakeClock) -> None:
    broker = make_broker(fake_time, rpm=1)
    await broker.acquire("openai/a", deadline=fake_time.now + 60)

    await broker.acquire("anthropic/b", deadline=fake_time.now + 60)

    assert fake_time.sleeps == []


async def test_report_asking_for_a_cooldown_cools_the_model_for_everyone(
    fake_time: FakeClock,
) -> None:
    broker = make_broker(fake_time)
    outcome = Outcome(ok=False, status=429, cool_until=fake_time.now + 20, reason="rate_limited")

    await broker.report("openai/a", outcome)

    assert broker.cooling_until("openai/a") == fake_time.now + 20
    assert broker.snapshot()["openai/a"]["errors_last_minute"] == 1


@pytest.mark.parametrize(
    "refusal",
    [
        ModelCoolingError("openai/a", 1234.5, "quota_exhausted"),
        BudgetExceededError("openai/a", 7.5),
    ],
    ids=["cooling", "budget"],
)
def test_refusal_survives_the_channel(refusal: ModelCoolingError | BudgetExceededError) -> None:
    with pytest.raises(type(refusal)) as caught:
        raise_refusal(refusal_to_dict(refusal))

    assert str(caught.value) == str(refusal)
    assert vars(caught.value) == vars(refusal)


def test_a_grant_raises_nothing() -> None:
    raise_refusal(None)
    raise_refusal({"granted": True})


async def test_aliases_can_share_their_providers_bucket(fake_time: FakeClock) -> None:
    broker = LocalBroker(
        RateLimiter(1),
        CooldownTable(),
        clock=fake_time,
        sleep=fake_time.sleep,
        limit_key=lambda model: "openai",
    )
    await broker.acquire("openai/a", deadline=fake_time.now + 600)

    await broker.acquire("openai-codex/b", deadline=fake_time.now + 600)

    assert fake_time.sleeps == [61.0]
