"""Metrics in the Prometheus text exposition format (0.0.4), written by hand.

``MetricsCollector`` reads the database: queue depth and the daemon's heartbeat row each
time, and every closed attempt once (``StoreStats.closed_attempts``), so its counters are
sums over the database and agree with it across restarts. Gate holds are the one thing the
database does not keep; the daemon counts them in a ``GateHoldCounter``.

``MetricsExporter`` is the daemon's side task: every ``interval`` seconds it renders the
text, writes it atomically to a file for node_exporter's textfile collector, and/or keeps
it for ``GET /metrics`` on a loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarmd import __version__
from swarmd.daemon.gate import GateHold
from swarmd.errors import EnvironmentProblem, SwarmdError
from swarmd.logs import get_logger
from swarmd.models import Clock, ExitReason, TaskState
from swarmd.store import Store
from swarmd.store.stats import AttemptCursor, ClosedAttempt, StoreStats
from swarmd.wire.report import llm_tries, llm_usage

log = get_logger("swarmd.daemon.metrics.collector")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Upper bounds (seconds) of the attempt-duration histogram: a command runs in a second,
an llm call in tens of seconds, a coding agent in tens of minutes."""

_PAGE = 500
_MAX_REQUEST_HEAD = 8192
_REQUEST_TIMEOUT_SECONDS = 5.0


class GateHoldCounter:
    """How many times the spawn gate closed, by the limit that closed it."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter({hold.value: 0 for hold in GateHold})

    def record(self, limit: str) -> None:
        self._counts[limit] += 1

    def counts(self) -> dict[str, int]:
        return dict(self._counts)


@dataclass(slots=True)
class AttemptTotals:
    """Counters summed over closed attempts; ``add`` each attempt exactly once."""

    by_reason: Counter[str] = field(
        default_factory=lambda: Counter({reason.value: 0 for reason in ExitReason})
    )
    duration_buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    duration_sum: float = 0.0
    duration_count: int = 0
    llm_requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    tokens: Counter[tuple[str, str]] = field(default_factory=Counter)
    cost_usd: dict[str, float] = field(default_factory=dict)

    def add(self, attempt: ClosedAttempt) -> None:
        self.by_reason[attempt.exit_reason] += 1
        duration = attempt.duration_s
        self.duration_sum += duration
        self.duration_count += 1
        for i, bound in enumerate(DURATION_BUCKETS):
            if duration <= bound:
                self.duration_buckets[i] += 1
        for model, outcome in llm_tries(attempt.result):
            self.llm_requests[model, outcome] += 1
        for model, usage in llm_usage(attempt.result):
            self.tokens[model, "prompt"] += usage.prompt_tokens
            self.tokens[model, "completion"] += usage.completion_tokens
            self.cost_usd[model] = self.cost_usd.get(model, 0.0) + usage.cost_usd


class MetricsCollector:
    """Renders the metrics text from the database (and the gate hold counter)."""

    def __init__(
        self,
        store: Store,
        stats: StoreStats,
        *,
        gate_holds: GateHoldCounter | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._store = store
        self._stats = stats
        self._gate_holds = gate_holds
        self._clock = clock
        self._cursor = AttemptCursor()
        self._totals = AttemptTotals()
        self._lock = asyncio.Lock()

    async def collect(self) -> str:
        """Read what changed since the last call and render every metric."""
        async with self._lock:
            await self._read_new_attempts()
            queue = await self._store.queue_depth()
            beat = await self._store.read_heartbeat()
            return render_metrics(
                queue=queue,
                totals=self._totals,
                heartbeat=beat,
                gate_holds=self._gate_holds.counts() if self._gate_holds else None,
                now=self._clock(),
            )

    async def _read_new_attempts(self) -> None:
        # Pages keep each read transaction short: the supervisor waits on the same connection.
        while True:
            attempts, cursor = await self._stats.closed_attempts(self._cursor, limit=_PAGE)
            for attempt in attempts:
                self._totals.add(attempt)
            self._cursor = cursor
            if len(attempts) < _PAGE:
                return


def render_metrics(
    *,
    queue: Mapping[str, int],
    totals: AttemptTotals,
    heartbeat: Mapping[str, Any] | None,
    gate_holds: Mapping[str, int] | None,
    now: float,
) -> str:
    """The whole exposition, one family after another."""
    text = TextExposition()
    text.family("swarmd_tasks", "gauge", "Tasks in the queue, by state.")
    for state in TaskState:
        text.sample("swarmd_tasks", queue.get(state.value, 0), state=state.value)
    live = (heartbeat or {}).get("status") or {}
    workers: Sequence[Mapping[str, Any]] = live.get("workers") or []
    text.family("swarmd_workers_running", "gauge", "Worker processes running now.")
    text.sample("swarmd_workers_running", len(workers))
    text.family("swarmd_workers_rss_bytes", "gauge", "Resident memory of all workers' trees.")
    text.sample("swarmd_workers_rss_bytes", sum(int(w.get("rss_bytes") or 0) for w in workers))
    add_attempt_families(text, totals)
    add_llm_families(text, totals)
    add_daemon_families(text, heartbeat, live, gate_holds, now=now)
    return text.render()


def add_attempt_families(text: TextExposition, totals: AttemptTotals) -> None:
    text.family("swarmd_attempts_total", "counter", "Attempts that ended, by exit reason.")
    for reason, count in sorted(totals.by_reason.items()):
        text.sample("swarmd_attempts_total", count, exit_reason=reason)
    name = "swarmd_attempt_duration_seconds"
    text.family(name, "histogram", "How long attempts ran, from claim to close.")
    for bound, count in zip(DURATION_BUCKETS, totals.duration_buckets, strict=True):
        # Written as Prometheus' own clients write them ("10.0"), so series keep their
        # identity whichever exporter wrote them.
        text.sample(f"{name}_bucket", count, le=repr(float(bound)))
    text.sample(f"{name}_bucket", totals.duration_count, le="+Inf")
    text.sample(f"{name}_sum", totals.duration_sum)
    text.sample(f"{name}_count", totals.duration_count)


def add_llm_families(text: TextExposition, totals: AttemptTotals) -> None:
    text.family("swarmd_llm_requests_total", "counter", "Requests to models, by model and outcome.")
    for (model, outcome), count in sorted(totals.llm_requests.items()):
        text.sample("swarmd_llm_requests_total", count, model=model, outcome=outcome)
    text.family("swarmd_llm_tokens_total", "counter", "Tokens of answered requests, by kind.")
    for (model, kind), count in sorted(totals.tokens.items()):
        text.sample("swarmd_llm_tokens_total", count, model=model, kind=kind)
    text.family("swarmd_llm_cost_usd_total", "counter", "Cost of answered requests, in USD.")
    for model, cost in sorted(totals.cost_usd.items()):
        text.sample("swarmd_llm_cost_usd_total", cost, model=model)


def add_daemon_families(
    text: TextExposition,
    heartbeat: Mapping[str, Any] | None,
    live: Mapping[str, Any],
    gate_holds: Mapping[str, int] | None,
    *,
    now: float,
) -> None:
    if gate_holds is not None:
        text.family("swarmd_gate_holds_total", "counter", "Times the spawn gate closed, by limit.")
        for limit, count in sorted(gate_holds.items()):
            text.sample("swarmd_gate_holds_total", count, limit=limit)
    gate = live.get("gate")
    if isinstance(gate, Mapping):
        text.family("swarmd_gate_open", "gauge", "1 while the spawn gate lets workers start.")
        text.sample("swarmd_gate_open", 1 if gate.get("allowed", True) else 0)
    models = live.get("models")
    if isinstance(models, Mapping) and models:
        text.family("swarmd_llm_model_cooling", "gauge", "1 while a model is cooling down.")
        for model, status in sorted(models.items()):
            until = status.get("cooling_until") if isinstance(status, Mapping) else None
            text.sample("swarmd_llm_model_cooling", int(bool(until and until > now)), model=model)
    if heartbeat is not None:
        text.family(
            "swarmd_daemon_heartbeat_timestamp_seconds",
            "gauge",
            "When the daemon's loop last wrote its heartbeat (Unix time).",
        )
        text.sample("swarmd_daemon_heartbeat_timestamp_seconds", heartbeat["heartbeat_at"])
        text.family(
            "swarmd_daemon_start_time_seconds", "gauge", "When the daemon started (Unix time)."
        )
        text.sample("swarmd_daemon_start_time_seconds", heartbeat["started_at"])
    text.family("swarmd_build_info", "gauge", "The running swarmd's version.")
    text.sample("swarmd_build_info", 1, version=__version__)


class TextExposition:
    """Builds the text format: a HELP and TYPE line per family, then its samples."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        # The TYPE line names the family as its samples do, ``_total`` included; the
        # parser strips the suffix from a counter's name itself.
        self._lines.append(f"# HELP {name} {escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        if labels:
            pairs = ",".join(f'{key}="{escape_label(val)}"' for key, val in labels.items())
            name = f"{name}{{{pairs}}}"
        self._lines.append(f"{name} {format_value(value)}")

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


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
        self._server.close()
        # Python 3.11's Server.close() leaves accepted connections open: end them here.
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
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
