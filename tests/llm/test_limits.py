"""The global rate limiter and the cool-down table, by simulation: no clock, no sleeping."""

from __future__ import annotations

import bisect
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmd.errors import ConfigError
from swarmd.llm.limits import CooldownTable, RateLimiter
from swarmd.llm.types import Outcome


def grant_times(limiter: RateLimiter, key: str, arrivals: list[float]) -> list[float]:
    return [now + limiter.reserve(key, now) for now in arrivals]


def busiest_window(grants: list[float], window: float = 60.0) -> int:
    """The most grants in any half-open window [t, t + window)."""
    ordered = sorted(grants)
    return max(
        (bisect.bisect_left(ordered, start + window) - i for i, start in enumerate(ordered)),
        default=0,
    )


@settings(max_examples=200, deadline=None)
@given(
    rpm=st.integers(min_value=1, max_value=120),
    burst=st.integers(min_value=1, max_value=5),
    gaps=st.lists(st.floats(min_value=0.0, max_value=20.0), min_size=1, max_size=300),
)
def test_no_sixty_second_window_holds_more_than_rpm_grants(
    rpm: int, burst: int, gaps: list[float]
) -> None:
    burst = min(burst, rpm)
    limiter = RateLimiter(rpm, burst=burst)
    arrivals = [sum(gaps[: i + 1]) for i in range(len(gaps))]

    grants = grant_times(limiter, "openai", arrivals)

    assert busiest_window(grants) <= rpm


@settings(max_examples=50, deadline=None)
@given(rpm=st.integers(min_value=1, max_value=600), requests=st.integers(1, 700))
def test_a_backlog_is_granted_at_even_intervals(rpm: int, requests: int) -> None:
    limiter = RateLimiter(rpm)

    grants = grant_times(limiter, "openai", [0.0] * requests)

    spacings = {round(b - a, 9) for a, b in itertools.pairwise(grants)}
    assert spacings <= {round(limiter.interval("openai"), 9)}


def test_ten_workers_with_a_backlog_stay_within_ten_percent_of_the_limit() -> None:
    limiter = RateLimiter(600)
    now, grants = 0.0, []
    # Ten workers, each asking again as soon as its previous permit was granted.
    pending = [0.0] * 10
    while now < 120.0:
        worker = min(range(10), key=pending.__getitem__)
        now = pending[worker]
        granted = now + limiter.reserve("openai", now)
        grants.append(granted)
        pending[worker] = granted

    in_first_minute = sum(1 for g in grants if g < 60.0)
    assert busiest_window(grants) <= 600
    assert 540 <= in_first_minute <= 600


def test_first_request_is_granted_at_once() -> None:
    assert RateLimiter(20).reserve("openai", 1000.0) == 0.0


def test_a_burst_is_granted_at_once_then_spacing_resumes() -> None:
    limiter = RateLimiter(60, burst=3)

    delays = [limiter.reserve("openai", 0.0) for _ in range(4)]

    assert delays[:3] == [0.0, 0.0, 0.0]
    assert delays[3] == pytest.approx(limiter.interval("openai"))


def test_delay_for_reserves_nothing() -> None:
    limiter = RateLimiter(2)
    limiter.reserve("openai", 0.0)

    assert limiter.delay_for("openai", 0.0) == limiter.delay_for("openai", 0.0) > 0


def test_each_provider_has_its_own_bucket_and_may_override_the_rpm() -> None:
    limiter = RateLimiter(1, overrides={"anthropic": 120})
    limiter.reserve("openai", 0.0)
    limiter.reserve("anthropic", 0.0)

    assert limiter.delay_for("openai", 0.0) == pytest.approx(61.0)
    assert limiter.delay_for("anthropic", 0.0) == pytest.approx(61.0 / 120)
    assert limiter.delay_for("minimax", 0.0) == 0.0


def test_idle_time_does_not_bank_a_burst() -> None:
    limiter = RateLimiter(60)
    limiter.reserve("openai", 0.0)

    delays = [limiter.reserve("openai", 3600.0) for _ in range(2)]

    assert delays == [0.0, pytest.approx(limiter.interval("openai"))]


def test_burst_larger_than_rpm_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot allow bursts of 5"):
        RateLimiter(3, burst=5)


def test_cooled_model_cools_until_then() -> None:
    table = CooldownTable()
    table.cool("openai/a", 100.0, "rate_limited")

    assert table.cooling_until("openai/a", 50.0) == 100.0
    assert table.cooling_until("openai/a", 100.0) is None
    assert table.cooling_until("anthropic/b", 50.0) is None


def test_shorter_cooldown_never_cuts_a_longer_one_short() -> None:
    table = CooldownTable()
    table.cool("openai/a", 100.0, "quota_exhausted")
    table.cool("openai/a", 20.0, "rate_limited")

    assert table.cooling_until("openai/a", 10.0) == 100.0
    assert table.cooling_reason("openai/a") == "quota_exhausted"


def test_recorded_outcome_with_cool_until_cools_the_model() -> None:
    table = CooldownTable()
    outcome = Outcome(ok=False, status=401, error="HTTP 401", cool_until=70.0, reason="auth_failed")

    table.record("openai/a", outcome, 10.0)

    assert table.cooling_until("openai/a", 10.0) == 70.0
    assert table.cooling_reason("openai/a") == "auth_failed"


def test_snapshot_counts_the_last_minute_only() -> None:
    table = CooldownTable()
    table.record("openai/a", Outcome(ok=True, status=200), 0.0)
    table.record("openai/a", Outcome(ok=False, status=500, error="HTTP 500 server error"), 30.0)
    table.record("openai/a", Outcome(ok=True, status=200), 50.0)

    status = table.snapshot(75.0)["openai/a"]

    assert status == {
        "requests_last_minute": 2,
        "errors_last_minute": 1,
        "cooling_until": None,
        "cooling_reason": None,
        "last_error": "HTTP 500 server error",
        "last_error_at": 30.0,
    }


def test_snapshot_shows_a_running_cooldown() -> None:
    table = CooldownTable()
    table.cool("anthropic/b", 200.0, "overloaded")

    status = table.snapshot(100.0)["anthropic/b"]

    assert status["cooling_until"] == 200.0
    assert status["cooling_reason"] == "overloaded"
    assert table.snapshot(250.0)["anthropic/b"]["cooling_until"] is None
