"""What agent CLIs report on stdout: their answer, the model, its tokens and their cost.

``claude -p --output-format json`` prints one result object when it finishes::

    {"type": "result", "subtype": "success", "is_error": false, "result": "...answer...",
     "total_cost_usd": 0.0079, "usage": {"input_tokens": 3, "cache_creation_input_tokens": 0,
     "cache_read_input_tokens": 15635, "output_tokens": 6},
     "modelUsage": {"claude-sonnet-4-5-20250929": {"inputTokens": 3, "outputTokens": 6,
                                                    "costUSD": 0.0079, ...}}, ...}

(``--output-format stream-json`` ends with the same object on its last line, so it reads too.)
Claude's ``input_tokens`` leave out the prompt read from or written to its cache; the prompt
tokens counted here include both, as the model read them all.

``codex exec --json`` prints JSON lines of events; each ``turn.completed`` carries the turn's
``usage`` {input_tokens, cached_input_tokens, output_tokens} (the cached tokens are part of the
input tokens), and the answer is the last ``agent_message`` item::

    {"type":"item.completed","item":{"id":"item_3","type":"agent_message","text":"...answer..."}}
    {"type":"turn.completed","usage":{"input_tokens":24763,"cached_input_tokens":24448,
                                      "output_tokens":122}}

Codex names no model and no cost in these events: the model is the agent's declared one, and
the cost comes from the configured prices when that model has one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from swarmd.wire.agent import UsageFormat

PROVIDER_OF = {UsageFormat.CLAUDE_JSON: "anthropic", UsageFormat.CODEX_JSON: "openai"}
_CLAUDE_PROMPT_FIELDS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)
_CODEX_ANSWER_ITEMS = ("agent_message", "assistant_message")  # the latter in early versions


@dataclass(frozen=True, slots=True)
class CliReport:
    """What one run of an agent CLI said of itself; ``problem`` when its usage was not found."""

    answer: str | None = None
    model: str | None = None  # the model's own name, without a provider
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    problem: str | None = None


def read_cli_report(usage_format: UsageFormat, stdout: str) -> CliReport:
    """Read ``stdout`` as ``usage_format`` prints it; never raises on bad output."""
    if usage_format is UsageFormat.CLAUDE_JSON:
        return read_claude_json(stdout)
    return read_codex_json(stdout)


def read_claude_json(stdout: str) -> CliReport:
    result = _claude_result(stdout)
    if result is None:
        return CliReport(
            problem="stdout holds no claude result object (is --output-format json set?)"
        )
    usage = result.get("usage")
    if not isinstance(usage, Mapping):
        usage = {}
    answer = result.get("result")
    return CliReport(
        answer=answer if isinstance(answer, str) else None,
        model=_main_claude_model(result.get("modelUsage")),
        prompt_tokens=sum(_count(usage.get(field)) for field in _CLAUDE_PROMPT_FIELDS),
        completion_tokens=_count(usage.get("output_tokens")),
        cost_usd=_amount(result.get("total_cost_usd")),
        problem=None if usage else "claude's result object carries no usage",
    )


def read_codex_json(stdout: str) -> CliReport:
    answer: str | None = None
    prompt = completion = turns = 0
    for event in _json_lines(stdout):
        kind = event.get("type")
        if kind == "turn.completed" and isinstance(usage := event.get("usage"), Mapping):
            turns += 1
            prompt += _count(usage.get("input_tokens"))
            completion += _count(usage.get("output_tokens"))
        elif kind == "item.completed" and isinstance(item := event.get("item"), Mapping):
            item_type = item.get("type") or item.get("item_type")
            if item_type in _CODEX_ANSWER_ITEMS and isinstance(item.get("text"), str):
                answer = item["text"]
    return CliReport(
        answer=answer,
        prompt_tokens=prompt,
        completion_tokens=completion,
        problem=None if turns else "stdout holds no codex turn.completed event (is --json set?)",
    )


def _claude_result(stdout: str) -> Mapping[str, Any] | None:
    """The result object: all of stdout, else its last JSON line of type "result"."""
    try:
        whole = json.loads(stdout)
    except ValueError:
        whole = None
    if isinstance(whole, Mapping):
        return whole
    results = [e for e in _json_lines(stdout) if e.get("type") == "result"]
    return results[-1] if results else None


def _main_claude_model(model_usage: Any) -> str | None:
    """The model that cost the most (Claude Code may hand small jobs to a smaller model)."""
    if not isinstance(model_usage, Mapping) or not model_usage:
        return None
    models = [(name, m) for name, m in model_usage.items() if isinstance(m, Mapping)]
    if not models:
        return None

    def weight(entry: tuple[str, Mapping[str, Any]]) -> tuple[float, int]:
        return (_amount(entry[1].get("costUSD")) or 0.0, _count(entry[1].get("outputTokens")))

    return str(max(models, key=weight)[0])


def _json_lines(text: str) -> Iterator[Mapping[str, Any]]:
    """Each line of ``text`` that is a JSON object; other lines are skipped."""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("{"):
            continue
        try:
            value = json.loads(stripped)
        except ValueError:
            continue
        if isinstance(value, Mapping):
            yield value


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _amount(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None
