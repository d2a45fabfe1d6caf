"""A stand-in for ``claude -p PROMPT --output-format json``: prints the result object.

The object has the documented shape of Claude Code's headless JSON output (``type``,
``subtype``, ``is_error``, ``result``, ``session_id``, ``total_cost_usd``, ``usage`` and the
per-model ``modelUsage``). The answer repeats the prompt and carries one file block::

    python standin_claude.py -p PROMPT --output-format json [--exit N]
"""

from __future__ import annotations

import argparse
import json
import sys

MODEL = "claude-sonnet-4-5-20250929"
HELPER_MODEL = "claude-haiku-4-5-20251001"
INPUT_TOKENS, CACHE_WRITE_TOKENS, CACHE_READ_TOKENS, OUTPUT_TOKENS = 3, 120, 15635, 46
COST_USD = 0.0079825


def answer_for(prompt: str) -> str:
    return f'Done: {prompt}\n<file path="notes/answer.md">\n{prompt}\n</file>\n'


def result_object(prompt: str) -> dict[str, object]:
    return {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "duration_ms": 1998,
        "duration_api_ms": 1976,
        "num_turns": 1,
        "result": answer_for(prompt),
        "stop_reason": "end_turn",
        "session_id": "0e639165-79b1-4bd4-bb0f-4cb4c15115d4",
        "total_cost_usd": COST_USD,
        "usage": {
            "input_tokens": INPUT_TOKENS,
            "cache_creation_input_tokens": CACHE_WRITE_TOKENS,
            "cache_read_input_tokens": CACHE_READ_TOKENS,
            "output_tokens": OUTPUT_TOKENS,
            "server_tool_use": {"web_search_requests": 0},
            "service_tier": "standard",
        },
        "modelUsage": {
            HELPER_MODEL: {
                "inputTokens": 310,
                "outputTokens": 12,
                "cacheReadInputTokens": 0,
                "cacheCreationInputTokens": 0,
                "webSearchRequests": 0,
                "costUSD": 0.00037,
                "contextWindow": 200000,
            },
            MODEL: {
                "inputTokens": INPUT_TOKENS,
                "outputTokens": OUTPUT_TOKENS,
                "cacheReadInputTokens": CACHE_READ_TOKENS,
                "cacheCreationInputTokens": CACHE_WRITE_TOKENS,
                "webSearchRequests": 0,
                "costUSD": COST_USD - 0.00037,
                "contextWindow": 200000,
            },
        },
        "permission_denials": [],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-p", dest="prompt", required=True)
    parser.add_argument("--output-format", default="text")
    parser.add_argument("--exit", type=int, default=0)
    args = parser.parse_args()
    print("thinking about it", file=sys.stderr)
    if args.output_format == "json":
        print(json.dumps(result_object(args.prompt)))
    else:
        print(answer_for(args.prompt), end="")
    return int(args.exit)


if __name__ == "__main__":
    sys.exit(main())
