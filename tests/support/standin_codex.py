"""A stand-in for ``codex exec --json PROMPT``: prints its JSON lines of events.

The events have the documented shape of ``codex exec --json``: ``thread.started``,
``turn.started``, ``item.*`` events (reasoning, a command execution, the ``agent_message``
answer) and ``turn.completed`` with the turn's ``usage``. The answer repeats the prompt and
carries one file block::

    python standin_codex.py exec --json PROMPT
"""

from __future__ import annotations

import json
import sys

INPUT_TOKENS, CACHED_INPUT_TOKENS, OUTPUT_TOKENS = 24763, 24448, 122


def answer_for(prompt: str) -> str:
    return f'Done: {prompt}\n<file path="notes/answer.md">\n{prompt}\n</file>\n'


def events(prompt: str) -> list[dict[str, object]]:
    command = {"id": "item_1", "type": "command_execution", "command": "bash -lc ls"}
    return [
        {"type": "thread.started", "thread_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"},
        {"type": "turn.started"},
        {
            "type": "item.completed",
            "item": {"id": "item_0", "type": "reasoning", "text": "**Reading the task**"},
        },
        {
            "type": "item.started",
            "item": {**command, "aggregated_output": "", "status": "in_progress"},
        },
        {
            "type": "item.completed",
            "item": {
                **command,
                "aggregated_output": "README.md\n",
                "exit_code": 0,
                "status": "completed",
            },
        },
        {
            "type": "item.completed",
            "item": {"id": "item_2", "type": "agent_message", "text": answer_for(prompt)},
        },
        {
            "type": "turn.completed",
            "usage": {
                "input_tokens": INPUT_TOKENS,
                "cached_input_tokens": CACHED_INPUT_TOKENS,
                "output_tokens": OUTPUT_TOKENS,
            },
        },
    ]


def main() -> int:
    if sys.argv[1:3] != ["exec", "--json"] or len(sys.argv) != 4:
        print("usage: standin_codex.py exec --json PROMPT", file=sys.stderr)
        return 2
    for event in events(sys.argv[3]):
        print(json.dumps(event, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
