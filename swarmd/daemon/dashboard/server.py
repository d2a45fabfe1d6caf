"""The dashboard's HTTP server: a small HTTP/1.1 server on ``asyncio.start_server``.

Routes (``GET`` only; anything else is 404 or 405):

- ``/``: the page, one self-contained HTML file (inline CSS and script, no request
  elsewhere);
- ``/state``: the latest snapshot as JSON;
- ``/events``: ``text/event-stream``, a ``state`` event about every second and ``log``
  events as lines are appended to the log.

With a token, every request must carry it (``Authorization: Bearer TOKEN`` or
``?token=TOKEN``) or gets 401; the comparison is constant-time. The token is never written
into a response. Without a token, only requests to a loopback name (``Host: localhost``,
``127.0.0.1``, ``[::1]``) are answered, so another site cannot reach the page by rebinding a
name of its own to 127.0.0.1.

A client cannot stall the daemon: a request head must arrive whole within
``REQUEST_TIMEOUT_SECONDS`` and fit in ``MAX_REQUEST_HEAD`` bytes; connections and event
streams are capped; every event stream has a short queue of its own, and a stream that
falls behind it (or whose socket does not drain within ``DRAIN_TIMEOUT_SECONDS``) is closed
rather than buffered. Snapshots are built once per interval for every stream together, and
only while a stream is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from swarmd.daemon.dashboard.logtail import LogTail
from swarmd.daemon.dashboard.snapshot import SnapshotBuilder
from swarmd.daemon.http_close import close_server
from swarmd.errors import EnvironmentProblem, SwarmdError
from swarmd.logs import get_logger

log = get_logger("swarmd.daemon.dashboard")

MAX_REQUEST_HEAD = 8192
REQUEST_TIMEOUT_SECONDS = 5.0
DRAIN_TIMEOUT_SECONDS = 10.0
MAX_CONNECTIONS = 64
MAX_EVENT_STREAMS = 8
STREAM_QUEUE = 16
"""Messages an event stream may have waiting before it counts as stalled and is closed."""
SNAPSHOT_SECONDS = 1.0
LOG_POLL_SECONDS = 0.25
REUSE_SECONDS = 0.5
RETRY_MS = 2000

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
_COMMON_HEADERS = (
    "Cache-Control: no-store",
    "X-Content-Type-Options: nosniff",
    "X-Frame-Options: DENY",
    "Referrer-Policy: no-referrer",
)


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]


class BadRequest(Exception):
    """A request head that is not HTTP/1.x."""


def parse_request(head: bytes) -> Request:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(lines[0])
    method, target, _ = parts
    try:
        url = urlsplit(target)
    except ValueError as exc:
        raise BadRequest(target) from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return Request(method, url.path, parse_qs(url.query), headers)


def carries_token(request: Request, token: bytes) -> bool:
    """Whether ``request`` carries ``token``, in its header or its query."""
    offered: list[str] = []
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        offered.append(credentials.strip())
    offered += request.query.get("token", [])
    # Each offer is compared in full, whatever the others gave: constant time per offer.
    matched = False
    for value in offered:
        matched |= hmac.compare_digest(value.encode("utf-8", "replace"), token)
    return matched


def names_this_machine(host_header: str) -> bool:
    """Whether a ``Host`` header names a loopback address (``localhost``, ``127.0.0.1``,
    ``[::1]``, with or without a port)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def response_head(
    status: int, content_type: str, *, length: int | None, extra: tuple[str, ...] = ()
) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        *([f"Content-Length: {length}"] if length is not None else []),
        "Connection: close",
        *_COMMON_HEADERS,
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def plain_response(status: int, text: str, *, extra: tuple[str, ...] = ()) -> bytes:
    body = (text + "\n").encode()
    head = response_head(status, "text/plain; charset=utf-8", length=len(body), extra=extra)
    return head + body


def sse_message(event: str, data: Any) -> bytes:
    # json.dumps with ensure_ascii never writes a newline, nor U+2028/2029: one data line.
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=True)}\n\n".encode()


def load_page() -> str:
    return resources.files("swarmd.daemon.dashboard").joinpath("page.html").read_text("utf-8")


class DashboardServer:
    """Serves the dashboard. ``start()`` binds (a port in use fails the daemon's start);
    ``run()`` is the side task that feeds the event streams, until cancelled; ``close()``
    ends every connection and stops listening."""

    def __init__(
        self,
        builder: SnapshotBuilder,
        tail: LogTail,
        *,
        host: str,
        port: int,
        token: str | None = None,
        snapshot_seconds: float = SNAPSHOT_SECONDS,
    ) -> None:
        self._builder = builder
        self._tail = tail
        self._host = host
        self._port = port
        self._token = token.encode() if token else None
        self._snapshot_seconds = snapshot_seconds
        self._page = load_page()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._streams: set[asyncio.Queue[bytes | None]] = set()
        self._streams_open = asyncio.Event()
        self._snapshot: dict[str, Any] | None = None
        self._snapshot_at = -math.inf
        self._snapshot_lock = asyncio.Lock()

    @property
    def address(self) -> tuple[str, int] | None:
        if self._server is None:
            return None
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._serve_connection, self._host, self._port, limit=MAX_REQUEST_HEAD
            )
        except OSError as exc:
            # asyncio words the error as "error while attempting to bind on address ...".
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise EnvironmentProblem(
                f"cannot serve the dashboard on {self._host}:{self._port} "
                f"(SWARMD_DASHBOARD_PORT): {reason}"
            ) from exc
        host, port = self.address or (self._host, self._port)
        shown = f"[{host}]" if ":" in host else host
        log.info("dashboard_serving", url=f"http://{shown}:{port}/", token=self._token is not None)

    async def run(self) -> None:
        """Feed the open event streams: log lines every ``LOG_POLL_SECONDS``, a snapshot
        every ``snapshot_seconds``; idle while none is open."""
        loop = asyncio.get_running_loop()
        next_snapshot = loop.time()
        while True:
            if not self._streams:
                self._streams_open.clear()
                await self._streams_open.wait()
                next_snapshot = loop.time()
            await self._pump_log()
            if loop.time() >= next_snapshot:
                snapshot = await self._refresh()
                if snapshot is not None:
                    self._broadcast(sse_message("state", snapshot))
                next_snapshot = max(next_snapshot + self._snapshot_seconds, loop.time())
            await asyncio.sleep(LOG_POLL_SECONDS)

    async def close(self) -> None:
        if self._server is None:
            return
        await close_server(self._server, self._connections)
        self._server = None

    async def _refresh(self) -> dict[str, Any] | None:
        """A new snapshot (one younger than ``REUSE_SECONDS`` serves again: many requests
        at once cost one build), or the last one if the store could not be read just now."""
        async with self._snapshot_lock:
            now = asyncio.get_running_loop().time()
            if now - self._snapshot_at < REUSE_SECONDS:
                return self._snapshot
            try:
                self._snapshot = await self._builder.build()
                self._snapshot_at = now
            except SwarmdError as exc:
                # The supervisor meets the same database and decides what to do about it.
                log.warning("dashboard_snapshot_failed", error=str(exc))
            return self._snapshot

    async def _pump_log(self) -> None:
        lines = await self._tail.poll()
        if lines:
            self._broadcast(sse_message("log", lines))

    def _broadcast(self, message: bytes) -> None:
        for queue in list(self._streams):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                # A stream this far behind is stalled: it is closed, not buffered for.
                self._streams.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                queue.put_nowait(None)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is None or len(self._connections) >= MAX_CONNECTIONS:
            writer.close()
            return
        self._connections.add(task)
        try:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                    head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                await self._refuse_oversized(reader, writer)
                return
            await self._answer(head, writer)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(DRAIN_TIMEOUT_SECONDS):
                    await writer.wait_closed()

    async def _refuse_oversized(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await self._send(writer, plain_response(431, "the request head is over 8 KiB"))
        # Read (a bounded part of) what the client is still sending: closing a socket with
        # unread data resets it, and the client may then never see the answer.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                for _ in range(16):
                    if not await reader.read(MAX_REQUEST_HEAD):
                        break

    async def _answer(self, head: bytes, writer: asyncio.StreamWriter) -> None:
        try:
            request = parse_request(head)
        except BadRequest:
            await self._send(writer, plain_response(400, "bad request"))
            return
        if self._token is None and not names_this_machine(request.headers.get("host", "")):
            # Without a token, a page on another site could reach this one through a name
            # that resolves to 127.0.0.1 (DNS rebinding): only loopback names are answered.
            await self._send(
                writer,
                plain_response(
                    403,
                    "this dashboard answers only to localhost, 127.0.0.1 or [::1]; "
                    "set SWARMD_DASHBOARD_TOKEN to serve it under another name",
                ),
            )
            return
        if self._token is not None and not carries_token(request, self._token):
            await self._send(
                writer,
                plain_response(
                    401,
                    "this dashboard needs its token: Authorization: Bearer TOKEN, or ?token=TOKEN",
                    extra=('WWW-Authenticate: Bearer realm="swarmd"',),
                ),
            )
            return
        if request.path not in ("/", "/state", "/events"):
            await self._send(writer, plain_response(404, "not found: try /, /state or /events"))
            return
        if request.method != "GET":
            await self._send(
                writer, plain_response(405, "method not allowed", extra=("Allow: GET",))
            )
            return
        if request.path == "/":
            await self._send_page(writer)
        elif request.path == "/state":
            await self._send_state(writer)
        else:
            await self._stream_events(writer)

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        async with asyncio.timeout(DRAIN_TIMEOUT_SECONDS):
            await writer.drain()

    async def _send_page(self, writer: asyncio.StreamWriter) -> None:
        # A fresh nonce per page: the page's own style and script are the only ones allowed.
        nonce = secrets.token_urlsafe(16)
        body = self._page.replace("{{nonce}}", nonce).encode()
        policy = (
            "Content-Security-Policy: default-src 'none'; "
            f"style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; connect-src 'self'; "
            "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
        head = response_head(200, "text/html; charset=utf-8", length=len(body), extra=(policy,))
        await self._send(writer, head + body)

    async def _send_state(self, writer: asyncio.StreamWriter) -> None:
        snapshot = await self._refresh()
        body = json.dumps(snapshot, ensure_ascii=True).encode()
        status = 200 if snapshot is not None else 503
        await self._send(writer, response_head(status, "application/json", length=len(body)) + body)

    async def _stream_events(self, writer: asyncio.StreamWriter) -> None:
        if len(self._streams) >= MAX_EVENT_STREAMS:
            await self._send(
                writer,
                plain_response(503, "too many open dashboards", extra=("Retry-After: 10",)),
            )
            return
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=STREAM_QUEUE)
        await self._send(writer, response_head(200, "text/event-stream", length=None))
        await self._pump_log()  # so the backlog below ends where the stream's lines begin
        snapshot = await self._refresh()
        opening = f"retry: {RETRY_MS}\n\n".encode() + sse_message("log", self._tail.recent)
        if snapshot is not None:
            opening += sse_message("state", snapshot)
        self._streams.add(queue)
        self._streams_open.set()
        try:
            await self._send(writer, opening)
            while (message := await queue.get()) is not None:
                await self._send(writer, message)
        finally:
            self._streams.discard(queue)
