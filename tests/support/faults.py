"""What the fake provider answers: scripted faults, recorded requests, and the wire bodies.

Plain data and pure functions, shared by the server (``tests.support.fake_server``) and the
client that steers a server in another process (``tests.support.fake_llm.FakeLLMControl``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ANY_MODEL = "*"

OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: {api_key}."),
    403: ("permission_error", None, "You are not allowed to use this model."),
    404: ("invalid_request_error", "model_not_found", "The model `{model}` does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded."),
    529: ("server_error", None, "Overloaded."),
}
ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key {api_key}"),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error."),
    529: ("overloaded_error", "Overloaded"),
}


@dataclass(frozen=True, slots=True)
class Fault:
    """How the server answers one request. ``message`` may name ``{api_key}`` and ``{model}``:
    the key the request carried and its model, to test that neither leaks further."""

    kind: str = "ok"  # ok | http | minimax | malformed | truncated | disconnect
    status: int = 200
    delay: float = 0.0
    retry_after: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    error_type: str | None = None
    error_code: str | None = None
    message: str | None = None
    text: str | None = None
    minimax_code: int = 0

    @classmethod
    def ok(cls, text: str | None = None, *, delay: float = 0.0) -> Fault:
        return cls(text=text, delay=delay)

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """A correct answer, ``delay`` seconds late: slower than a short timeout."""
        return cls(delay=delay)

    @classmethod
    def http(
        cls,
        status: int,
        *,
        retry_after: str | float | None = None,
        error_type: str | None = None,
        error_code: str | None = None,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        return cls(
            kind="http",
            status=status,
            retry_after=None if retry_after is None else str(retry_after),
            error_type=error_type,
            error_code=error_code,
            message=message,
            headers=dict(headers or {}),
        )

    @classmethod
    def rate_limited(cls, retry_after: str | float | None = None) -> Fault:
        return cls.http(429, retry_after=retry_after)

    @classmethod
    def insufficient_quota(cls) -> Fault:
        return cls.http(
            429,
            error_type="insufficient_quota",
            error_code="insufficient_quota",
            message="You exceeded your current quota, please check your plan and billing details.",
        )

    @classmethod
    def minimax(cls, code: int, message: str = "error") -> Fault:
        """A MiniMax error hidden in an HTTP 200 answer's ``base_resp``."""
        return cls(kind="minimax", minimax_code=code, message=message)

    @classmethod
    def malformed(cls) -> Fault:
        """HTTP 200 whose body is not JSON."""
        return cls(kind="malformed")

    @classmethod
    def truncated(cls) -> Fault:
        """HTTP 200 announcing more body than it sends, then closing the connection."""
        return cls(kind="truncated")

    @classmethod
    def disconnect(cls) -> Fault:
        """Close the connection without answering."""
        return cls(kind="disconnect")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["headers"] = dict(self.headers)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    at: float  # wall clock, when the request was fully read
    monotonic: float
    path: str
    flavour: str  # openai | minimax | anthropic
    model: str | None
    headers: dict[str, str]  # lower-case names
    body: Any

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordedRequest:
        return cls(**data)


def default_answer(model: str, payload: Any) -> str:
    """The answer when no fault is scripted: one file block naming the model and the prompt."""
    first_line = last_user_text(payload).strip().splitlines()[:1]
    prompt = first_line[0][:200] if first_line else ""
    return f'<file path="answer.md">\n{model} answers: {prompt}\n</file>\n'


def answer_body(flavour: str, fault: Fault, payload: Any, number: int) -> dict[str, Any]:
    """A successful answer in ``flavour``'s wire format; ``number`` makes its id unique."""
    model = str(payload.get("model", "")) if isinstance(payload, dict) else ""
    text = fault.text if fault.text is not None else default_answer(model, payload)
    prompt_tokens = _count_prompt_words(payload)
    completion_tokens = len(text.split())
    if flavour == "anthropic":
        return {
            "id": f"msg_fake_{number}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens},
        }
    body: dict[str, Any] = {
        "id": f"chatcmpl-fake-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    if flavour == "minimax":
        body["base_resp"] = {"status_code": 0, "status_msg": ""}
    return body


def error_body(
    flavour: str, fault: Fault, headers: Mapping[str, str], payload: Any
) -> dict[str, Any]:
    """An HTTP error answer in ``flavour``'s wire format, for a request sent with ``headers``."""
    model = str(payload.get("model", "")) if isinstance(payload, dict) else ""
    api_key = received_key(headers)
    if flavour == "anthropic":
        kind, text = ANTHROPIC_ERRORS.get(fault.status, ("api_error", "Error."))
        message = (fault.message or text).format(api_key=api_key, model=model)
        return {"type": "error", "error": {"type": fault.error_type or kind, "message": message}}
    kind, code, text = OPENAI_ERRORS.get(fault.status, ("server_error", None, "Error."))
    message = (fault.message or text).format(api_key=api_key, model=model)
    return {
        "error": {
            "message": message,
            "type": fault.error_type or kind,
            "param": None,
            "code": fault.error_code or code,
        }
    }


def minimax_error_body(fault: Fault) -> dict[str, Any]:
    """MiniMax's way of failing: HTTP 200, no choices, the error in ``base_resp``."""
    return {
        "id": "",
        "choices": None,
        "base_resp": {"status_code": fault.minimax_code, "status_msg": fault.message},
    }


def received_key(headers: Mapping[str, str]) -> str:
    """The API key a request carried, from either provider's header."""
    if "x-api-key" in headers:
        return headers["x-api-key"]
    return headers.get("authorization", "").removeprefix("Bearer ").strip()


def last_user_text(payload: Any) -> str:
    """The text of the last user message of a chat request body."""
    messages = payload.get("messages") if isinstance(payload, dict) else None
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def _count_prompt_words(payload: Any) -> int:
    if not isinstance(payload, dict):
        return 0
    words = len(str(payload.get("system") or "").split())
    for message in payload.get("messages") or []:
        if isinstance(message, dict):
            words += len(str(message.get("content") or "").split())
    return words
