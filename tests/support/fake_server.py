"""The fake provider's server: a real HTTP/1.1 server on loopback, scripted per model.

Routes (by path) to the wire formats of ``tests.support.faults``; ``/_control/*`` lets a
client in another process script and inspect it (``tests.support.fake_llm.FakeLLMControl``).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from tests.support.faults import (
    ANY_MODEL,
    Fault,
    RecordedRequest,
    answer_body,
    error_body,
    minimax_error_body,
)

MAX_HEAD_BYTES = 64 * 1024


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
            error = error_body(flavour, fault, request.headers, payload)
            await _write(writer, fault.status, json.dumps(error).encode(), headers)
            return True
        if fault.kind == "minimax":
            await _write(writer, 200, json.dumps(minimax_error_body(fault)).encode(), headers)
            return True
        body = json.dumps(answer_body(flavour, fault, payload, next(self._ids))).encode()
        if fault.kind == "truncated":
            half = body[: len(body) // 2]
            await _write(writer, 200, half, headers, content_length=len(body))
            return False
        await _write(writer, 200, body, headers)
        return True

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
