"""The nouns of the LLM layer: requests, answers, tries, and the outcomes workers report.

Plain dataclasses with no behaviour beyond conversion: providers turn a ``ChatRequest`` into
their wire format and their answer into a ``ChatResponse``; the router adds the ``ModelTry``
list; ``Outcome`` crosses the worker↔daemon channel as JSON.

Times that cross a process boundary (deadlines, cool-down ends) are wall-clock seconds since
the epoch (``time.time()``): the router runs in a worker, the permit broker in the daemon, and
monotonic clocks are not comparable across processes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

Clock = Callable[[], float]
"""Wall-clock seconds since the epoch; injected so tests never sleep."""

Role = Literal["system", "user", "assistant"]

_THINK_BLOCK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat completion, in the shape every provider can express."""

    messages: Sequence[Message]
    system: str | None = None
    max_tokens: int = 4096
    temperature: float | None = None

    @classmethod
    def from_prompt(cls, prompt: str, *, system: str | None = None, **options: Any) -> ChatRequest:
        """A one-message request: the common case of an agent sending its task prompt."""
        return cls(messages=(Message("user", prompt),), system=system, **options)


@dataclass(frozen=True, slots=True)
class ChatResponse:
    """What a model answered. ``model`` is the ``provider/model`` name from the chain."""

    model: str
    text: str  # the answer with reasoning (<think>) blocks removed: what agents act on
    prompt_tokens: int  # every token of the prompt, those written to or read from a cache too
    completion_tokens: int
    latency_s: float
    raw_finish_reason: str | None = None
    raw_text: str | None = None  # the answer exactly as sent, when it differs from ``text``
    truncated: bool = False  # the model stopped at the token limit, not at the answer's end
    # Of ``prompt_tokens``: written to the provider's prompt cache (those at its one-hour
    # rate counted again apart), and read from it. Anthropic reports them; others leave 0.
    cache_creation_tokens: int = 0
    cache_creation_1h_tokens: int = 0
    cache_read_tokens: int = 0

    @property
    def full_text(self) -> str:
        """The answer exactly as the model sent it, reasoning included."""
        return self.raw_text if self.raw_text is not None else self.text


@dataclass(frozen=True, slots=True)
class ModelTry:
    """One request to one model (or one model skipped) during a task's call."""

    model: str
    outcome: str  # "ok", or the failure's short name: "rate_limited", "server_error", ...
    status: int | None
    error: str | None
    latency_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RouterResult:
    response: ChatResponse
    tries: tuple[ModelTry, ...]
    cost_usd: float | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one request to a model ended, as a worker reports it to the daemon's broker.

    ``cool_until`` (wall-clock) asks the broker to skip the model for every worker until then.
    """

    ok: bool
    status: int | None = None
    disposition: str | None = None  # "retry" | "next" | "stop" for failures
    retry_after: float | None = None
    error: str | None = None
    cool_until: float | None = None
    reason: str | None = None  # the failure's short name, shown beside a cool-down

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)


def strip_reasoning(text: str) -> str:
    """``text`` without ``<think>...</think>`` blocks (an unclosed one runs to the end)."""
    if "<think>" not in text:
        return text
    return _THINK_BLOCK.sub("", text).lstrip("\n")
