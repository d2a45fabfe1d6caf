"""How an LLM request failed, and what the router should do about it.

Every failure of one request to one model is a ``ModelCallError`` whose ``disposition`` tells
the router's single retry loop what to do next::

    ProviderError (swarmd.errors)
    ├── ModelCallError               one request to one model failed
    │   ├── RateLimitedError         RETRY  429 rate limit, MiniMax 1002
    │   ├── ServerError              RETRY  5xx, 408, 409, MiniMax internal errors
    │   ├── OverloadedError          RETRY  529 / Anthropic overloaded_error
    │   ├── RequestTimeoutError      RETRY  connect/read/pool timeout, or the whole-request cap
    │   ├── UnreachableError         RETRY  connection refused, reset or dropped
    │   ├── MalformedResponseError   RETRY  a body that is not the JSON it should be, or cut short
    │   ├── ResponseTooLargeError    NEXT   an answer past the cap on what is read of one
    │   ├── QuotaExhaustedError      NEXT   insufficient_quota, billing, MiniMax 1008
    │   ├── AuthenticationError      NEXT   401/403, MiniMax 1004/2049
    │   ├── ModelNotFoundError       NEXT   404
    │   ├── NotConfiguredError       NEXT   no provider is configured for the model's prefix
    │   └── BadRequestError          STOP   400/422 and other request errors
    ├── ModelCoolingError            the broker refused a permit: the model is cooling down
    ├── BudgetExceededError          no permit could be granted before the task's deadline
    └── ChainFailedError             the router gave up; carries every ``ModelTry``
        ├── AllModelsFailedError     every model in the chain failed (or the budget ran out)
        └── RequestRejectedError     a STOP failure: another model would refuse it too

Messages never carry an API key: provider messages are redacted against the key that was
sent, and authentication failures drop the provider's message entirely (OpenAI's names a
prefix and suffix of the key). What a provider or a model name says is shown through
``swarmd.text.escape``: one line, shortened, no control or bidi character left raw.
"""

from __future__ import annotations

import email.utils
import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from swarmd.errors import ProviderError
from swarmd.llm.types import ModelTry
from swarmd.text import escape

DETAIL_MAX_CHARS = 300
_OPENAI_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


class Disposition(enum.StrEnum):
    RETRY = "retry"  # the same model may answer if asked again, after a pause
    NEXT = "next"  # this model will not answer for a while: cool it down, try the next
    STOP = "stop"  # the request itself is wrong: no model will answer it


class ModelCallError(ProviderError):
    """One request to one model failed; ``summary`` is the short reason shown to users."""

    disposition: Disposition = Disposition.RETRY
    outcome: str = "error"

    def __init__(
        self,
        model: str,
        summary: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        detail: str | None = None,
    ) -> None:
        self.model = model
        self.summary = summary
        self.status = status
        self.retry_after = retry_after
        self.detail = detail
        super().__init__(f"{escape(model)}: {self.description}")

    @property
    def description(self) -> str:
        """The summary and the provider's own words, without the model name."""
        return f"{self.summary} ({self.detail})" if self.detail else self.summary


class RateLimitedError(ModelCallError):
    outcome = "rate_limited"


class ServerError(ModelCallError):
    outcome = "server_error"


class OverloadedError(ModelCallError):
    outcome = "overloaded"


class RequestTimeoutError(ModelCallError):
    outcome = "timeout"


class UnreachableError(ModelCallError):
    outcome = "unreachable"


class MalformedResponseError(ModelCallError):
    outcome = "malformed"


class ResponseTooLargeError(ModelCallError):
    """The answer was larger than swarmd reads. Asking the same model again would likely get
    as much again; another model, or this one later, may answer within the cap."""

    disposition = Disposition.NEXT
    outcome = "too_large"


class QuotaExhaustedError(ModelCallError):
    disposition = Disposition.NEXT
    outcome = "quota_exhausted"


class AuthenticationError(ModelCallError):
    disposition = Disposition.NEXT
    outcome = "auth_failed"


class ModelNotFoundError(ModelCallError):
    disposition = Disposition.NEXT
    outcome = "not_found"


class NotConfiguredError(ModelCallError):
    disposition = Disposition.NEXT
    outcome = "not_configured"


class BadRequestError(ModelCallError):
    disposition = Disposition.STOP
    outcome = "bad_request"


class ModelCoolingError(ProviderError):
    """The broker refused a permit: the model cools down until ``until`` (wall-clock)."""

    def __init__(self, model: str, until: float, reason: str | None = None) -> None:
        self.model = model
        self.until = until
        self.reason = reason
        after = f" after {reason}" if reason else ""
        super().__init__(f"{escape(model)} is cooling down{after}")


class BudgetExceededError(ProviderError):
    """No rate-limit permit for the model could be granted before the task's deadline."""

    def __init__(self, model: str, wait_s: float) -> None:
        self.model = model
        self.wait_s = wait_s
        super().__init__(
            f"{escape(model)}: the next rate-limit permit is {wait_s:.1f}s away, "
            "past the task's deadline"
        )


class ChainFailedError(ProviderError):
    """The router gave up on a request; ``tries`` lists every request it made."""

    def __init__(self, message: str, tries: Sequence[ModelTry]) -> None:
        self.tries = tuple(tries)
        super().__init__(message)


class AllModelsFailedError(ChainFailedError):
    """Every model in the chain failed; ``failures`` maps each model to what it answered."""

    def __init__(
        self, failures: Mapping[str, str], tries: Sequence[ModelTry], *, budget_spent: bool
    ) -> None:
        self.failures = dict(failures)
        self.budget_spent = budget_spent
        lead = "no model answered before the deadline" if budget_spent else "every model failed"
        named = "; ".join(f"{escape(model)}: {what}" for model, what in failures.items())
        super().__init__(f"{lead}: {named}", tries)


class RequestRejectedError(ChainFailedError):
    """A model refused the request itself (STOP): asking another model would not help."""

    def __init__(self, error: ModelCallError, tries: Sequence[ModelTry]) -> None:
        self.error = error
        super().__init__(f"{escape(error.model)} refused the request: {error.description}", tries)


def error_for_status(
    model: str,
    status: int,
    *,
    headers: Mapping[str, str],
    payload: Any,
    now: float,
    secrets: Iterable[str] = (),
) -> ModelCallError:
    """Classify an HTTP error answer from an OpenAI-compatible or Anthropic endpoint.

    ``payload`` is the decoded JSON body (or ``None``); ``now`` (wall-clock) resolves a
    Retry-After given as an HTTP date.
    """
    retry_after = parse_retry_after(headers, now=now, rate_limited=status == 429)
    kind = _error_kind(payload)
    detail = None if status in (401, 403) else error_detail(payload, secrets)
    where: dict[str, Any] = {"status": status, "retry_after": retry_after, "detail": detail}
    if status == 429:
        if kind & {"insufficient_quota", "billing_hard_limit_reached"}:
            return QuotaExhaustedError(model, "HTTP 429 quota exhausted", **where)
        return RateLimitedError(model, "HTTP 429 rate limited", **where)
    if status == 402 or "billing_error" in kind or _says_out_of_credit(detail):
        return QuotaExhaustedError(model, f"HTTP {status} quota exhausted", **where)
    if status in (401, 403):
        return AuthenticationError(model, f"HTTP {status} authentication failed", **where)
    if status == 404:
        return ModelNotFoundError(model, "HTTP 404 model not found", **where)
    if status == 529 or "overloaded_error" in kind:
        return OverloadedError(model, f"HTTP {status} overloaded", **where)
    if status in (408, 409) or status >= 500:
        return ServerError(model, f"HTTP {status} server error", **where)
    return BadRequestError(model, f"HTTP {status} bad request", **where)


MINIMAX_RATE_LIMITED = frozenset({1002})
MINIMAX_AUTH_FAILED = frozenset({1004, 2049})
MINIMAX_NO_BALANCE = frozenset({1008})
MINIMAX_INVALID_PARAMS = frozenset({2013})


def error_for_minimax(
    model: str,
    code: int,
    message: str | None,
    *,
    status: int | None,
    retry_after: float | None,
    secrets: Iterable[str] = (),
) -> ModelCallError:
    """Classify a MiniMax ``base_resp`` error; it often arrives inside an HTTP 200 answer."""
    summary = f"MiniMax error {code}"
    detail = None if code in MINIMAX_AUTH_FAILED or not message else shown_detail(message, secrets)
    where: dict[str, Any] = {"status": status, "retry_after": retry_after, "detail": detail}
    if code in MINIMAX_RATE_LIMITED:
        return RateLimitedError(model, f"{summary} rate limited", **where)
    if code in MINIMAX_AUTH_FAILED:
        return AuthenticationError(model, f"{summary} authentication failed", **where)
    if code in MINIMAX_NO_BALANCE:
        return QuotaExhaustedError(model, f"{summary} insufficient balance", **where)
    if code in MINIMAX_INVALID_PARAMS:
        return BadRequestError(model, f"{summary} invalid parameters", **where)
    return ServerError(model, summary, **where)


def parse_retry_after(
    headers: Mapping[str, str], *, now: float, rate_limited: bool = True
) -> float | None:
    """Seconds to wait, from the headers providers send, or ``None`` when none says.

    In order: ``retry-after-ms``; ``retry-after`` (seconds or an HTTP date); then, for a
    rate-limited answer, the reset headers of whichever limit is spent (OpenAI's
    ``x-ratelimit-reset-*`` durations like ``6m0s``, Anthropic's RFC 3339
    ``anthropic-ratelimit-*-reset``). Never negative; the caller applies its cap.
    """
    value = headers.get("retry-after-ms")
    if value is not None:
        millis = _parse_float(value)
        if millis is not None:
            return max(0.0, millis / 1000.0)
    value = headers.get("retry-after")
    if value is not None:
        seconds = _parse_float(value)
        if seconds is None:
            seconds = _seconds_until_http_date(value, now)
        if seconds is not None:
            return max(0.0, seconds)
    if rate_limited:
        return _reset_headers_delay(headers, now)
    return None


def error_detail(payload: Any, secrets: Iterable[str] = ()) -> str | None:
    """The provider's own message from an error body, shortened and with secrets removed."""
    message: Any = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            message = error.get("message")
        elif isinstance(error, str):
            message = error
        base_resp = payload.get("base_resp")
        if message is None and isinstance(base_resp, dict):
            message = base_resp.get("status_msg")
        if message is None:
            message = payload.get("message")
    if not isinstance(message, str) or not message.strip():
        return None
    return shown_detail(message, secrets)


def shown_detail(text: str, secrets: Iterable[str] = ()) -> str:
    """A provider's own words as a message shows them: secrets removed first (so no cut can
    split a key past the redactor), one line, shortened, hidden characters escaped."""
    return escape(" ".join(redact(text, secrets).split())[:DETAIL_MAX_CHARS])


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "****")
    return text


def describe_transport_error(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """A one-line description of an httpx transport failure, secrets removed."""
    text = str(exc).strip()
    name = type(exc).__name__
    return shown_detail(f"{name}: {text}" if text else name, secrets)


def _error_kind(payload: Any) -> set[str]:
    """The error's type and code strings, from OpenAI (``error.type``/``error.code``) or
    Anthropic (``error.type``) bodies."""
    if not isinstance(payload, dict):
        return set()
    error = payload.get("error")
    if not isinstance(error, dict):
        return set()
    return {str(error[key]) for key in ("type", "code") if error.get(key) is not None}


def _says_out_of_credit(detail: str | None) -> bool:
    # Anthropic answers an empty prepaid balance with HTTP 400 invalid_request_error and this
    # sentence: retrying the same key is useless, another provider may still answer.
    return detail is not None and "credit balance is too low" in detail.lower()


def _parse_float(value: str) -> float | None:
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _seconds_until_http_date(value: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are always GMT
        return None
    return when.timestamp() - now


def _reset_headers_delay(headers: Mapping[str, str], now: float) -> float | None:
    delays: list[float] = []
    for limit in ("requests", "tokens"):
        if headers.get(f"x-ratelimit-remaining-{limit}", "").strip() == "0":
            reset = _parse_openai_duration(headers.get(f"x-ratelimit-reset-{limit}", ""))
            if reset is not None:
                delays.append(reset)
    for limit in ("requests", "tokens", "input-tokens", "output-tokens"):
        if headers.get(f"anthropic-ratelimit-{limit}-remaining", "").strip() == "0":
            reset_at = _parse_rfc3339(headers.get(f"anthropic-ratelimit-{limit}-reset", ""))
            if reset_at is not None:
                delays.append(reset_at - now)
    return max(0.0, *delays) if delays else None


def _parse_openai_duration(value: str) -> float | None:
    """``6m0s``, ``1.5s``, ``20ms``, ``1h2m`` -> seconds."""
    value = value.strip()
    parts = _OPENAI_DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return _parse_float(value)
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(number) * scale[unit] for number, unit in parts)


def _parse_rfc3339(value: str) -> float | None:
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp()
