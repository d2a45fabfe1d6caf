"""Alerts: the events an operator cares about, sent to a command and/or a webhook.

The supervisor never waits for an alert. ``Alerter.send`` redacts the alert, puts it on a
bounded queue (a full queue drops its oldest alert and logs ``alert_dropped``) and returns;
the daemon's ``alerts`` side task delivers each alert to every sink, each try bounded by a
timeout, failures retried with backoff. Every payload passes the log redactor first: no
secret the daemon knows (provider keys, the webhook's URL and secret) leaves in an alert.

    AlertWatch       which milestone becomes which alert: tickets, dead tasks, the daemon's
                     start and stop, and states that last (the whole model chain cooling
                     down, the gate held too long), read from the heartbeats
    Alerter          the event filter, the redactor, the queue, the retries
    ├── CommandSink  SWARMD_NOTIFY_COMMAND: the JSON on stdin, SWARMD_EVENT_* in its env
    └── WebhookSink  SWARMD_WEBHOOK_URL: a JSON POST with Slack's ``text`` field, signed
                     (``X-Swarmd-Signature: sha256=<hex>``) when SWARMD_WEBHOOK_SECRET is set
                     (both in ``alert_sinks``)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from swarmd.config import Settings
from swarmd.daemon.alert_sinks import AlertRefused, AlertSink, CommandSink, WebhookSink
from swarmd.errors import AlertError, SwarmdError
from swarmd.logs import Redactor, get_logger
from swarmd.models import AlertEvent, TicketState

if TYPE_CHECKING:
    # Imported where a webhook is built: a daemon without one never loads an HTTP client.
    pass
from swarmd.spawn.groups import scrub_environment
from swarmd.store import Store

log = get_logger("swarmd.daemon.alerts")

QUEUE_CAPACITY = 100

_TICKET_EVENTS = {
    TicketState.SUCCEEDED: AlertEvent.TICKET_SUCCEEDED,
    TicketState.FAILED: AlertEvent.TICKET_FAILED,
    TicketState.CANCELLED: AlertEvent.TICKET_CANCELLED,
}


class Alerter:
    """Queues alerts without waiting and delivers them from one side task (``run``)."""

    def __init__(
        self,
        sinks: Sequence[AlertSink],
        *,
        events: Collection[AlertEvent] = tuple(AlertEvent),
        redactor: Redactor | None = None,
        attempts: int = 4,
        backoff_seconds: float = 1.0,
        backoff_max_seconds: float = 30.0,
        capacity: int = QUEUE_CAPACITY,
        host: str | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._sinks = tuple(sinks)
        self._events = frozenset(events)
        self._redactor = redactor or Redactor()
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._backoff_max = backoff_max_seconds
        self._queue: deque[dict[str, Any]] = deque()
        self._capacity = capacity
        self._host = host or socket.gethostname()
        self._wall_clock = wall_clock
        self._pending = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self.last_error: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._sinks)

    def wants(self, event: AlertEvent) -> bool:
        return self.enabled and event in self._events

    def send(self, event: AlertEvent, text: str, **fields: Any) -> None:
        """Queue one alert for delivery, if a sink is set and ``event`` is wanted; never waits."""
        if not self.wants(event):
            return
        stamp = datetime.fromtimestamp(self._wall_clock(), UTC).isoformat(timespec="seconds")
        payload = {
            "event": event.value,
            "text": f"swarmd@{self._host}: {text}",
            "host": self._host,
            "time": stamp,
            **fields,
        }
        if len(self._queue) >= self._capacity:
            oldest = self._queue.popleft()
            self.dropped += 1
            log.warning(
                "alert_dropped",
                alert=oldest["event"],
                time=oldest["time"],
                detail=f"the alert queue is full ({self._capacity})",
            )
        self._queue.append(self._redactor.scrub_data(payload))
        self._idle.clear()
        self._pending.set()

    async def run(self) -> None:
        """The side task: deliver queued alerts as they come, until cancelled."""
        while True:
            await self._pending.wait()
            await self.deliver_queued()

    async def deliver_queued(self) -> None:
        """Deliver every queued alert, oldest first."""
        self._pending.clear()
        try:
            while self._queue:
                await self.deliver(self._queue.popleft())
        finally:
            if not self._queue:
                self._idle.set()

    async def deliver(self, payload: dict[str, Any]) -> bool:
        """Deliver one alert to every sink at once; whether every sink took it."""
        body = json.dumps(payload).encode()
        taken = await asyncio.gather(
            *(self._deliver_to(sink, payload, body) for sink in self._sinks)
        )
        return all(taken)

    async def _deliver_to(self, sink: AlertSink, payload: dict[str, Any], body: bytes) -> bool:
        event = payload["event"]
        for attempt in range(1, self._attempts + 1):
            try:
                await sink.deliver(payload, body)
            except AlertError as exc:
                final = attempt == self._attempts or isinstance(exc, AlertRefused)
                if final:
                    self.failed += 1
                    self.last_error = f"{sink.name}: {exc}"
                    log.warning(
                        "alert_failed",
                        alert=event,
                        sink=sink.name,
                        attempts=attempt,
                        error=str(exc),
                    )
                    return False
                log.info("alert_retrying", alert=event, sink=sink.name, error=str(exc))
                await asyncio.sleep(min(self._backoff_max, self._backoff * 2 ** (attempt - 1)))
            else:
                self.delivered += 1
                log.info("alert_sent", alert=event, sink=sink.name, attempt=attempt)
                return True
        return False

    async def flush(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the queued alerts to be delivered."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._idle.wait()
        if not self._idle.is_set():
            log.warning("alerts_abandoned", queued=len(self._queue), grace_s=grace)

    async def aclose(self) -> None:
        for sink in self._sinks:
            await sink.aclose()

    @contextlib.asynccontextmanager
    async def running(
        self, on_done: Callable[[asyncio.Task[None]], None], *, grace: float
    ) -> AsyncIterator[Alerter]:
        """Run the ``alerts`` side task for the block; after it, deliver what is queued
        within ``grace`` seconds. ``on_done`` sees the task end (a failure stops the daemon)."""
        if not self.enabled:
            yield self
            return
        runner = asyncio.create_task(self.run(), name="alerts")
        runner.add_done_callback(on_done)
        try:
            yield self
        finally:
            if not runner.done():
                await self.flush(grace)
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await self.aclose()


def build_alerter(settings: Settings, base_env: Mapping[str, str]) -> Alerter:
    """The alerter ``settings`` ask for: a command sink, a webhook sink, both, or none."""
    secrets = settings.secrets
    sinks: list[AlertSink] = []
    timeout = settings.notify_timeout_seconds
    if settings.notify_command:
        # Nothing the daemon holds secret reaches the command: no key, by name or by value.
        env = {
            name: value
            for name, value in scrub_environment(base_env).items()
            if not any(secret in value for secret in secrets)
        }
        sinks.append(CommandSink(settings.notify_command, env=env, timeout=timeout))
    if settings.webhook_url is not None:
        import httpx

        secret = settings.webhook_secret
        sinks.append(
            WebhookSink(
                settings.webhook_url.get_secret_value(),
                client=httpx.AsyncClient(trust_env=False),
                secret=secret.get_secret_value() if secret else None,
                timeout=timeout,
            )
        )
    return Alerter(
        sinks,
        events=settings.notify_events,
        redactor=Redactor(secrets),
        attempts=settings.notify_attempts,
    )


class AlertWatch:
    """Which of the daemon's milestones become alerts, and their words.

    States that last are read from the heartbeats and alerted once each time they begin:
    every model of the chain cooling down (again after one is free), the gate held longer
    than ``gate_held_seconds`` (again after it opens).
    """

    def __init__(
        self,
        alerter: Alerter,
        store: Store,
        *,
        model_chain: Sequence[str],
        gate_held_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.alerter = alerter
        self._store = store
        self._chain = tuple(model_chain)
        self._gate_held_seconds = gate_held_seconds
        self._clock = clock
        self._chain_cooling = False
        self._gate_held_since: float | None = None
        self._gate_alerted = False

    def daemon_started(self, **fields: Any) -> None:
        self.alerter.send(AlertEvent.DAEMON_STARTED, "the daemon started", **fields)

    def daemon_stopped(self, **fields: Any) -> None:
        self.alerter.send(AlertEvent.DAEMON_STOPPED, "the daemon is stopping", **fields)

    async def ticket_finished(self, ticket_id: int, state: TicketState) -> None:
        event = _TICKET_EVENTS.get(state)
        if event is None or not self.alerter.wants(event):
            return
        title = None
        with contextlib.suppress(SwarmdError):
            title = (await self._store.get_ticket(ticket_id)).title
        named = f"ticket {ticket_id}" + (f" ({title})" if title else "")
        self.alerter.send(
            event, f"{named} {state.value}", ticket=ticket_id, title=title, state=state.value
        )

    def task_dead(self, ticket_id: int, ref: str, error: str | None) -> None:
        self.alerter.send(
            AlertEvent.TASK_DEAD,
            f"task {ref} is dead: " + (error or "its attempts are exhausted"),
            ticket=ticket_id,
            task=ref,
            error=error,
        )

    def retention_pruned(self, *, freed_bytes: int, removed: int, tickets_removed: int) -> None:
        """A retention pass removed files or tickets' rows."""
        rows = f", and {plural(tickets_removed, 'ticket')}' rows" if tickets_removed else ""
        self.alerter.send(
            AlertEvent.RETENTION_PRUNED,
            f"retention freed {size(freed_bytes)}: {plural(removed, 'path')} removed{rows}",
            freed_bytes=freed_bytes,
            removed=removed,
            tickets_removed=tickets_removed,
        )

    def retention_failed(
        self, error: str | None = None, *, not_removed: Sequence[tuple[str, str]] = ()
    ) -> None:
        """A retention pass failed (``error``), or could not remove some paths (each with
        why); the next pass, a day later, tries again."""
        if error is not None:
            text = f"retention failed: {error}; it tries again in a day"
        else:
            shown = "; ".join(f"{path} ({why})" for path, why in not_removed[:3])
            more = f" and {len(not_removed) - 3} more" if len(not_removed) > 3 else ""
            text = f"retention could not remove {plural(len(not_removed), 'path')}: {shown}{more}"
        self.alerter.send(
            AlertEvent.RETENTION_FAILED,
            text,
            error=error,
            not_removed=[{"path": path, "error": why} for path, why in not_removed[:20]],
            not_removed_count=len(not_removed),
        )

    def heartbeat(self, snapshot: Mapping[str, Any], models: Mapping[str, Any]) -> None:
        self._watch_models(models)
        self._watch_gate(snapshot.get("gate") or {})

    def _watch_models(self, models: Mapping[str, Any]) -> None:
        statuses = [models.get(model) or {} for model in self._chain]
        cooling = bool(statuses) and all(s.get("cooling_until") is not None for s in statuses)
        if cooling and not self._chain_cooling:
            shown = [
                {
                    "model": model,
                    "reason": status.get("cooling_reason"),
                    "until": _iso(status.get("cooling_until")),
                }
                for model, status in zip(self._chain, statuses, strict=True)
            ]
            self.alerter.send(
                AlertEvent.MODELS_COOLING,
                "every model of the chain is cooling down: "
                + ", ".join(f"{m['model']} ({m['reason'] or 'errors'})" for m in shown),
                models=shown,
            )
        self._chain_cooling = cooling

    def _watch_gate(self, gate: Mapping[str, Any]) -> None:
        if gate.get("allowed", True):
            self._gate_held_since = None
            self._gate_alerted = False
            return
        now = self._clock()
        if self._gate_held_since is None:
            self._gate_held_since = now
        held = now - self._gate_held_since
        if held >= self._gate_held_seconds and not self._gate_alerted:
            self._gate_alerted = True
            reason = gate.get("reason") or "unknown"
            self.alerter.send(
                AlertEvent.GATE_HELD,
                f"the spawn gate has held for {held / 60:.0f} min: {reason}",
                reason=reason,
                held_minutes=round(held / 60, 1),
            )


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def size(count: int) -> str:
    """``count`` bytes for a person: ``512 B``, ``3.4 MiB``, ``1.2 GiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _iso(stamp: Any) -> str | None:
    if not isinstance(stamp, int | float):
        return None
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")
