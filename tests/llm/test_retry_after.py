"""Reading how long a provider asks us to wait, from every header style they use."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime

import httpx
import pytest

from swarmd.llm.errors import parse_retry_after

NOW = 1_700_000_000.0


def headers(**values: str) -> httpx.Headers:
    return httpx.Headers({name.replace("_", "-"): value for name, value in values.items()})


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (headers(retry_after="7"), 7.0),
        (headers(retry_after="1.5"), 1.5),
        (headers(retry_after=email.utils.formatdate(NOW + 30, usegmt=True)), 30.0),
        (headers(retry_after=email.utils.formatdate(NOW - 30, usegmt=True)), 0.0),
        (headers(retry_after_ms="250"), 0.25),
        (headers(retry_after_ms="250", retry_after="9"), 0.25),
        (headers(retry_after="-3"), 0.0),
        (headers(retry_after="soon"), None),
        (headers(), None),
    ],
    ids=[
        "seconds",
        "fraction",
        "http-date",
        "date-past",
        "ms",
        "ms-first",
        "negative",
        "junk",
        "none",
    ],
)
def test_retry_after_header(given: httpx.Headers, expected: float | None) -> None:
    assert parse_retry_after(given, now=NOW) == expected


@pytest.mark.parametrize(
    ("reset", "expected"),
    [("6m0s", 360.0), ("1s", 1.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("2.5", 2.5)],
)
def test_openai_reset_duration_of_a_spent_limit(reset: str, expected: float) -> None:
    given = headers(x_ratelimit_remaining_requests="0", x_ratelimit_reset_requests=reset)

    assert parse_retry_after(given, now=NOW) == pytest.approx(expected)


def test_openai_reset_of_a_limit_not_spent_is_ignored() -> None:
    given = headers(x_ratelimit_remaining_requests="12", x_ratelimit_reset_requests="6m0s")

    assert parse_retry_after(given, now=NOW) is None


def test_the_longest_spent_limit_wins() -> None:
    given = headers(
        x_ratelimit_remaining_requests="0",
        x_ratelimit_reset_requests="2s",
        x_ratelimit_remaining_tokens="0",
        x_ratelimit_reset_tokens="45s",
    )

    assert parse_retry_after(given, now=NOW) == 45.0


def test_anthropic_reset_timestamp_of_a_spent_limit() -> None:
    given = headers(
        anthropic_ratelimit_requests_remaining="0",
        anthropic_ratelimit_requests_reset=rfc3339(NOW + 12),
    )

    assert parse_retry_after(given, now=NOW) == pytest.approx(12.0)


def test_reset_headers_are_ignored_for_an_answer_that_was_not_rate_limited() -> None:
    given = headers(x_ratelimit_remaining_requests="0", x_ratelimit_reset_requests="6m0s")

    assert parse_retry_after(given, now=NOW, rate_limited=False) is None
