"""The daemon's metrics side task: refresh the text, write it to a file, serve it on a port.

Every ``interval`` seconds it renders the metrics, writes them atomically to a file for
node_exporter's textfile collector, and/or keeps them for ``GET /metrics`` on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

from swarmd.daemon.http_close import close_server
from swarmd.daemon.metrics.collector import MetricsCollector
from swarmd.daemon.metrics.exposition import CONTENT_TYPE
from swarmd.errors import EnvironmentProblem, SwarmdError
from swarmd.logs import get_logger

log = get_logger("swarmd.daemon.metrics")

_MAX_REQUEST_HEAD = 8192
_REQUEST_TIMEOUT_SECONDS = 5.0


class MetricsExporter:
    """Refreshes the metrics every ``interval`` s: to ``textfile``, and/or for ``GET /metrics``.

    ``start()`` binds the port (so a port in use fails the daemon's start, not later);
    ``run()`` is the side task, until cancelled; ``close()`` stops listening.
    """

    def __init__(
        self,
        collector: MetricsCollector,
        *,
        interval: float = 10.0,
        textfile: Path | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self._collector = collector
        self._interval = interval
        self._textfile = textfile
        self._port = port
        self._host = host
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._text = ""
        self._textfile_failing = False

    @property
    def text(self) -> str:
        """The latest rendering (empty before the first refresh)."""
        return self._text

    @property
    def address(self) -> tuple[str, int] | None:
        """Where ``GET /metrics`` is served, once started."""
        if self._server is None:
            return None
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self) -> None:
        """Render once and bind the port, if one is configured."""
        await self.refresh()
        if self._port is None:
            return
        try:
            self._server = await asyncio.start_server(
                self._serve_connection, self._host, self._port, limit=_MAX_REQUEST_HEAD
            )
        except OSError as exc:
            raise EnvironmentProblem(
                f"cannot serve metrics on {self._host}:{self._port} "
                f"(SWARMD_METRICS_PORT): {exc.strerror or exc}"
            ) from exc
        address = self.address
        assert address is not None  # the server was just started
        host, port = address
        log.info("metrics_serving", url=f"http://{host}:{port}/metrics")

    async def run(self) -> None:
        """Refresh every ``interval`` seconds until cancelled."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            # Drift-corrected: a slow refresh does not push every later one back, and one
            # that overran is not followed by a burst of catch-up refreshes.
            next_at = max(next_at + self._interval, loop.time())
            await asyncio.sleep(next_at - loop.time())
            await self.refresh()

    async def refresh(self) -> None:
        try:
            self._text = await self._collector.collect()
        except SwarmdError as exc:
            # The supervisor meets the same database and decides what to do about it; the
            # scrape keeps the last good text meanwhile.
            log.warning("metrics_collect_failed", error=str(exc))
            return
        if self._textfile is not None:
            await asyncio.to_thread(self._write_textfile, self._textfile, self._text)

    def _write_textfile(self, path: Path, text: str) -> None:
        try:
            write_atomically(path, text)
        except OSError as exc:
            if not self._textfile_failing:
                log.warning("metrics_textfile_failed", path=str(path), error=str(exc))
            self._textfile_failing = True
            return
        if self._textfile_failing:
            log.info("metrics_textfile_recovered", path=str(path))
        self._textfile_failing = False

    async def close(self) -> None:
        if self._server is None:
            return
        await close_server(self._server, self._connections)
        self._server = None

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
            status, body, head_only = answer_request(head, self._text)
            writer.write(http_response(status, body, head_only=head_only))
            await writer.drain()
        except (
            TimeoutError,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()


def answer_request(head: bytes, text: str) -> tuple[int, bytes, bool]:
    """(status, body, HEAD?) for one request head; only ``GET /metrics`` (and ``/``) exist."""
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return 400, b"bad request\n", False
    method, target = parts[0], parts[1].split("?", 1)[0]
    if target not in ("/metrics", "/"):
        return 404, b"not found: try /metrics\n", method == "HEAD"
    if method not in ("GET", "HEAD"):
        return 405, b"method not allowed\n", False
    return 200, text.encode(), method == "HEAD"


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def http_response(status: int, body: bytes, *, head_only: bool = False) -> bytes:
    content_type = CONTENT_TYPE if status == 200 else "text/plain; charset=utf-8"
    headers = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if status == 405:
        headers.append("Allow: GET, HEAD")
    head = ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


def write_atomically(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` so a reader sees the old file or the new one, never half.

    The temporary name starts with a dot and does not end in ``.prom``: node_exporter's
    textfile collector reads only ``*.prom``. The mode is set explicitly, as a service's
    umask (0077) would keep node_exporter, another user, out.
    """
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        with os.fdopen(fd, "wb") as file:
            os.fchmod(fd, mode)
            file.write(text.encode())
        os.replace(staged, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
        raise
