"""A fake LLM provider: a real HTTP/1.1 server on loopback with injectable faults.

It speaks the wire formats swarmd's providers speak, chosen by path:

    POST /v1/chat/completions, /chat/completions   OpenAI Chat Completions (Ollama, vLLM...)
    POST /minimax/v1/chat/completions              MiniMax: the same, plus ``base_resp``
    POST /v1/messages                              Anthropic Messages

Faults are scripted per model name (the ``model`` of the request body): a queue consumed one
request at a time, then a standing default; the model ``"*"`` scripts every model. Every
request is recorded (times, path, model, headers, body) so tests can assert what was sent,
and that a cooling model got nothing.

A server in another process is steered over its control endpoints (``FakeLLMControl``)::

    POST /_control/script    {"model": "m", "faults": [{...}], "default": {...} | null}
    POST /_control/latency   {"seconds": 1.0}
    POST /_control/reset     forget scripts and recorded requests
    GET  /_control/requests  {"requests": [{...}, ...]}
    GET  /_control/counts    {"counts": {"m": 3}}

Use it in-process as ``with FakeLLMServer() as server:`` (its own thread and event loop), or
standalone: ``python -m tests.support.fake_llm --port 0 --latency 1.0 --script FILE|JSON``,
which prints ``fake-llm listening on http://127.0.0.1:PORT`` once it accepts connections.

The pieces live in ``tests.support.faults`` (what is answered) and
``tests.support.fake_server`` (the server); this module is the one to import.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import httpx

from tests.support.fake_server import MAX_HEAD_BYTES, FakeLLMServer
from tests.support.faults import (
    ANTHROPIC_ERRORS,
    ANY_MODEL,
    OPENAI_ERRORS,
    Fault,
    RecordedRequest,
    default_answer,
)

__all__ = [
    "ANTHROPIC_ERRORS",
    "ANY_MODEL",
    "MAX_HEAD_BYTES",
    "OPENAI_ERRORS",
    "FakeLLMControl",
    "FakeLLMServer",
    "Fault",
    "RecordedRequest",
    "default_answer",
    "main",
]


class FakeLLMControl:
    """Steers a fake server running in another process through its control endpoints."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout

    def script(self, model: str, *faults: Fault, default: Fault | None = None) -> None:
        body = {
            "model": model,
            "faults": [f.to_dict() for f in faults],
            "default": default.to_dict() if default else None,
        }
        self._call("POST", "script", body)

    def set_latency(self, seconds: float) -> None:
        self._call("POST", "latency", {"seconds": seconds})

    def reset(self) -> None:
        self._call("POST", "reset", {})

    def requests(self, model: str | None = None) -> list[RecordedRequest]:
        records = [RecordedRequest.from_dict(r) for r in self._call("GET", "requests")["requests"]]
        return [r for r in records if model is None or r.model == model]

    def counts(self) -> dict[str, int]:
        return dict(self._call("GET", "counts")["counts"])

    def _call(self, method: str, action: str, body: Any = None) -> dict[str, Any]:
        response = httpx.request(
            method,
            f"{self.url}/_control/{action}",
            json=body,
            timeout=self._timeout,
            trust_env=False,
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


def _load_script(value: str) -> dict[str, Any]:
    text = Path(value).read_text(encoding="utf-8") if not value.lstrip().startswith("{") else value
    script = json.loads(text)
    if not isinstance(script, dict):
        raise SystemExit("--script must be a JSON object: {model: {faults: [...], default: {...}}}")
    return script


async def _serve_standalone(args: argparse.Namespace) -> None:
    server = FakeLLMServer(latency=args.latency, host=args.host, port=args.port)
    for model, entry in (_load_script(args.script) if args.script else {}).items():
        faults = [Fault.from_dict(f) for f in entry.get("faults", [])]
        default = Fault.from_dict(entry["default"]) if entry.get("default") else None
        server.script(model, *faults, default=default)
    await server.start_serving()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"fake-llm listening on {server.url}", flush=True)
    await stop.wait()
    await server.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.fake_llm")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--script", help="JSON, or a file of JSON: {model: {faults, default}}")
    asyncio.run(_serve_standalone(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
