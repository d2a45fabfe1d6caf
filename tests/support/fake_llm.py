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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import http
import itertools
import json
import signal
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

ANY_MODEL = "*"
MAX_HEAD_BYTES = 64 * 1024

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


@dataclass
class _Script:
    queue: deque[Fault] = field(default_factory=deque)
    default: Fault | None = None


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FakeLLMServer:
    """The server. Thread-safe: tests script and inspect it while it serves."""

    def __init__(self, *, latency: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._latency = latency
        self._lock = threading.Lock()
        self._scripts: dict[str, _Script] = {}
        self._records: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    # -- addresses ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    @property
    def minimax_base_url(self) -> str:
        return f"{self.url}/minimax/v1"

    # -- scripting and inspection --------------------------------------------------------------

    def script(self, model: str, *faults: Fault, default: Fault | None = None) -> None:
        """Queue ``faults`` for ``model``'s next requests; ``default`` answers after them."""
        with self._lock:
            entry = self._scripts.setdefault(model, _Script())
            entry.queue.extend(faults)
            if default is not None:
                entry.default = default

    def set_latency(self, seconds: float) -> None:
        with self._lock:
            self._latency = seconds

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self._records.clear()

    def requests(self, model: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self._records if model is None or r.model == model]

    def count(self, model: str | None = None) -> int:
        return len(self.requests(model))

    def counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for record in self.requests():
            totals[str(record.model)] = totals.get(str(record.model), 0) + 1
        return totals

    # -- running in a thread -------------------------------------------------------------------

    def start(self) -> FakeLLMServer:
        """Serve from a background thread with its own event loop."""
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve_until_stopped() -> None:
            try:
                await self.start_serving()
                self._loop = asyncio.get_running_loop()
                self._stopping = asyncio.Event()
            except BaseException as exc:
                failure.append(exc)
                raise
            finally:
                ready.set()
            await self._stopping.wait()
            await self.aclose()

        self._thread = threading.Thread(
            target=asyncio.run, args=(serve_until_stopped(),), name="fake-llm", daemon=True
        )
        self._thread.start()
        if not ready.wait(30) or failure:
            raise RuntimeError("the fake LLM server did not start") from (
                failure[0] if failure else None
            )
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._stopping is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(30)
        self._thread = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- running in the current event loop --------------------------------------------------------

    async def start_serving(self) -> None:
        self._server = await asyncio.start_server(
            self._serve_connection, self.host, self.port, limit=MAX_HEAD_BYTES
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        if self._server is None:
            return
        self._server.close()
        # Python 3.11's Server.close() leaves accepted connections open (and slow answers
        # sleeping): end them here, so nothing outlives the server.
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    # -- HTTP ----------------------------------------------------------------------------------

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                keep_alive = await self._answer(request, writer)
                if not keep_alive or request.headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _answer(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        """Write the response; return whether the connection stays usable."""
        if request.path.startswith("/_control/"):
            status, payload = self._control(request)
            await _write(writer, status, json.dumps(payload).encode(), {})
            return True
        flavour = _flavour(request.method, request.path)
        if flavour is None:
            body = json.dumps({"error": {"message": f"no route for {request.path}"}})
            await _write(writer, 404, body.encode(), {})
            return True
        payload = _decode(request.body)
        model = payload.get("model") if isinstance(payload, dict) else None
        fault, latency = self._record_and_pick(request, flavour, model, payload)
        if latency + fault.delay > 0:
            await asyncio.sleep(latency + fault.delay)
        return await self._write_fault(writer, fault, flavour, request, payload)

    def _record_and_pick(
        self, request: _Request, flavour: str, model: Any, payload: Any
    ) -> tuple[Fault, float]:
        record = RecordedRequest(
            at=time.time(),
            monotonic=time.monotonic(),
            path=request.path,
            flavour=flavour,
            model=model if isinstance(model, str) else None,
            headers=dict(request.headers),
            body=payload,
        )
        with self._lock:
            self._records.append(record)
            return self._next_fault(record.model), self._latency

    def _next_fault(self, model: str | None) -> Fault:
        for name in (model, ANY_MODEL):
            entry = self._scripts.get(name) if name is not None else None
            if entry is not None and entry.queue:
                return entry.queue.popleft()
        for name in (model, ANY_MODEL):
            entry = self._scripts.get(name) if name is not None else None
            if entry is not None and entry.default is not None:
                return entry.default
        return Fault()

    async def _write_fault(
        self,
        writer: asyncio.StreamWriter,
        fault: Fault,
        flavour: str,
        request: _Request,
        payload: Any,
    ) -> bool:
        headers = dict(fault.headers)
        if fault.retry_after is not None:
            headers["retry-after"] = fault.retry_after
        if fault.kind == "disconnect":
            return False
        if fault.kind == "malformed":
            await _write(writer, 200, b'{"id": "chatcmpl-broken", "choices": [', headers)
            return True
        if fault.kind == "http":
            error = _error_body(flavour, fault, request, payload)
            await _write(writer, fault.status, json.dumps(error).encode(), headers)
            return True
        if fault.kind == "minimax":
            hidden = {
                "id": "",
                "choices": None,
                "base_resp": {"status_code": fault.minimax_code, "status_msg": fault.message},
            }
            await _write(writer, 200, json.dumps(hidden).encode(), headers)
            return True
        body = json.dumps(self._answer_body(flavour, fault, payload)).encode()
        if fault.kind == "truncated":
            half = body[: len(body) // 2]
            await _write(writer, 200, half, headers, content_length=len(body))
            return False
        await _write(writer, 200, body, headers)
        return True

    def _answer_body(self, flavour: str, fault: Fault, payload: Any) -> dict[str, Any]:
        model = str(payload.get("model", "")) if isinstance(payload, dict) else ""
        text = fault.text if fault.text is not None else default_answer(model, payload)
        prompt_tokens = _count_prompt_words(payload)
        completion_tokens = len(text.split())
        number = next(self._ids)
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

    def _control(self, request: _Request) -> tuple[int, dict[str, Any]]:
        data = _decode(request.body) if request.body else {}
        if not isinstance(data, dict):
            return 400, {"error": "the body must be a JSON object"}
        action = request.path.removeprefix("/_control/")
        if action == "script" and request.method == "POST":
            faults = [Fault.from_dict(f) for f in data.get("faults", [])]
            default = Fault.from_dict(data["default"]) if data.get("default") else None
            self.script(str(data["model"]), *faults, default=default)
        elif action == "latency" and request.method == "POST":
            self.set_latency(float(data["seconds"]))
        elif action == "reset" and request.method == "POST":
            self.reset()
        elif action == "requests" and request.method == "GET":
            return 200, {"requests": [r.to_dict() for r in self.requests()]}
        elif action == "counts" and request.method == "GET":
            return 200, {"counts": self.counts()}
        else:
            return 404, {"error": f"no control action {request.method} {action}"}
        return 200, {"ok": True}


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


def default_answer(model: str, payload: Any) -> str:
    """The answer when no fault is scripted: one file block naming the model and the prompt."""
    first_line = _last_user_text(payload).strip().splitlines()[:1]
    prompt = first_line[0][:200] if first_line else ""
    return f'<file path="answer.md">\n{model} answers: {prompt}\n</file>\n'


def _error_body(flavour: str, fault: Fault, request: _Request, payload: Any) -> dict[str, Any]:
    model = str(payload.get("model", "")) if isinstance(payload, dict) else ""
    api_key = _received_key(request.headers)
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


def _received_key(headers: Mapping[str, str]) -> str:
    if "x-api-key" in headers:
        return headers["x-api-key"]
    return headers.get("authorization", "").removeprefix("Bearer ").strip()


def _flavour(method: str, path: str) -> str | None:
    if method != "POST":
        return None
    if path == "/minimax/v1/chat/completions":
        return "minimax"
    if path in ("/v1/chat/completions", "/chat/completions"):
        return "openai"
    if path == "/v1/messages":
        return "anthropic"
    return None


def _last_user_text(payload: Any) -> str:
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


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """One request from a keep-alive connection, or ``None`` when the client hung up."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(length) if length else b""
    return _Request(method, target.split("?", 1)[0], headers, body)


async def _write(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    content_length: int | None = None,
) -> None:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Overloaded" if status == 529 else "Unknown"
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body) if content_length is None else content_length}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()


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
