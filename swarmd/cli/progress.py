"""Watching one ticket until it finishes: live progress on a terminal, plain lines otherwise.

While its ready tasks wait on the gate (slots, memory, load), the gate's sentence is shown
once per change of what holds it; the gate's state is read from the heartbeat row that the
daemon (or ``run-ticket``'s own supervisor) writes every couple of seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from swarmd.cli.quoting import printable
from swarmd.doorbell import FollowerBell
from swarmd.home import HEARTBEAT_STALE_SECONDS, heartbeat_is_stale
from swarmd.models import Ticket, TicketState
from swarmd.store import Store

GATE_REASON_CHARS = 300
_FIGURES = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def progress_text(ticket: Ticket) -> str:
    counts = ticket.task_counts
    total = sum(counts.values())
    done = counts.get("succeeded", 0)
    running = counts.get("running", 0)
    failed = sum(counts.get(s, 0) for s in ("failed", "dead"))
    waiting = sum(counts.get(s, 0) for s in ("ready", "blocked"))
    other = sum(counts.get(s, 0) for s in ("cancelled", "skipped"))
    text = f"ticket {ticket.id} {ticket.state.value}: done {done}/{total}, running {running}"
    text += f", waiting {waiting}, failed {failed}"
    if other:
        text += f", cancelled/skipped {other}"
    return text


UNKNOWN = "unknown"
"""What ``gate_hold`` says when it cannot tell: no fresh heartbeat, or the ticket is over."""


def gate_hold(ticket: Ticket, beat: dict[str, Any] | None, now: float) -> str | None:
    """Why the ticket's ready tasks are not starting: the gate's sentence; None when nothing
    holds them (the gate is open, or none of its tasks is waiting to start); ``UNKNOWN``
    when there is no fresh heartbeat to tell."""
    if ticket.state.is_terminal:
        return UNKNOWN
    if not ticket.task_counts.get("ready"):
        return None
    if beat is None or heartbeat_is_stale(now - float(beat["heartbeat_at"])):
        return UNKNOWN
    gate = (beat.get("status") or {}).get("gate") or {}
    if gate.get("allowed", True):
        return None
    return printable(str(gate.get("reason") or "no reason given"), GATE_REASON_CHARS)


class ProgressPrinter:
    """Prints a ticket's progress when it changes: one rewritten line on a TTY.

    A gate hold is a line of its own, printed when the hold begins or its cause changes
    (not when only its figures move: available memory changes every heartbeat), and once
    more when the gate lets the ticket's tasks start.
    """

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last = ""
        self._hold_shape: str | None = None

    def show(self, ticket: Ticket, hold: str | None = UNKNOWN) -> None:
        text = progress_text(ticket)
        if text != self._last:
            self._last = text
            if self._tty:
                self._stream.write("\r\x1b[2K" + text)
            else:
                self._stream.write(text + "\n")
            self._stream.flush()
        self._show_hold(ticket, hold)

    def _show_hold(self, ticket: Ticket, hold: str | None) -> None:
        if hold == UNKNOWN:
            return
        shape = None if hold is None else _FIGURES.sub("#", hold)
        if shape == self._hold_shape:
            return
        if hold is not None:
            self._note(f"ticket {ticket.id} waits: the gate holds: {hold}")
        else:
            self._note(f"ticket {ticket.id}: the gate no longer holds its tasks")
        self._hold_shape = shape

    def _note(self, text: str) -> None:
        if self._tty:
            # Clear the progress line, print the note above it, and draw the line again.
            self._stream.write("\r\x1b[2K" + text + "\n" + self._last)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._tty and self._last:
            self._stream.write("\n")
            self._stream.flush()


FOLLOW_CHECK_SECONDS = 0.01
"""How soon a follower looks at ``data_version`` again after it saw a change, once no task
waits to start (the ticket's last tasks run). The pragma reads no table. Each look that
finds nothing new doubles the wait, up to ``QUIET_CHECK_SECONDS``: an hour-long last task
costs ten looks a second, not a hundred."""

QUIET_CHECK_SECONDS = 0.1
"""The longest a follower waits between two looks once no task waits to start, unless its
bell rings first (``swarmd.doorbell``): the daemon rings it once the ticket's delivery is
written, and without a bell the end is seen within a tenth of a second."""

WAITING_CHECK_SECONDS = 0.25
"""How often it looks while tasks still wait to start: the ticket cannot end yet, and every
change it sees costs a read of the ticket."""

GATE_CHECK_SECONDS = 1.0
"""How often a follower reads the heartbeat row for the gate, at most; the daemon writes it
every couple of seconds."""

HANG_AGAIN_SECONDS = 10.0
"""How often a follower hangs its bell at the door again: a daemon that restarted forgot it."""


async def follow_ticket(
    location: Path | str,
    ticket_id: int,
    *,
    printer: ProgressPrinter | None = None,
    interval: float = FOLLOW_CHECK_SECONDS,
    stop: asyncio.Event | None = None,
    doorbell: Path | None = None,
) -> Ticket:
    """Follow the ticket (on its own connection) until it has finished and its delivery has
    settled, or ``stop`` is set.

    Finished, a ticket is followed on until its delivery archive is written or has failed
    (``Delivery.settled``), for as long as a daemon's heartbeat says one is there to write
    it: whoever waited for the ticket finds its delivery. It checks ``data_version`` alone,
    and reads the ticket only when another connection has committed since: ``interval``
    seconds after a change once no task waits to start (then longer and longer, up to
    ``QUIET_CHECK_SECONDS``, while nothing changes), every ``WAITING_CHECK_SECONDS``
    before. With ``doorbell`` (the home's), it hangs a bell there and looks at once when the
    daemon rings it. ``stop`` ends the wait at once, after a last look.
    """
    stop = stop or asyncio.Event()
    wake = asyncio.Event()
    bell = FollowerBell(doorbell, ticket_id, wake.set) if doorbell is not None else None
    store = await Store.open(location)
    relay = asyncio.create_task(_set_when_set(stop, wake), name="follow-stop")
    try:
        if bell is not None:
            bell.open()
        ticket = await store.get_ticket(ticket_id)
        follower = _Follower(store, ticket, printer, interval)
        hung_at = time.monotonic()
        while True:
            wake.clear()  # before the look: a ring during it wakes the next wait at once
            if await follower.look() or stop.is_set():
                return follower.ticket
            if bell is not None and time.monotonic() - hung_at >= HANG_AGAIN_SECONDS:
                hung_at = time.monotonic()
                bell.hang()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(follower.pace()):
                    await wake.wait()
    finally:
        relay.cancel()
        if bell is not None:
            bell.close()
        await store.close()


class _Follower:
    """One ticket's follower: what it last saw, and how soon to look again."""

    def __init__(
        self, store: Store, ticket: Ticket, printer: ProgressPrinter | None, interval: float
    ) -> None:
        self.ticket = ticket
        self._store = store
        self._printer = printer
        self._interval = interval
        self._quiet_pace = interval
        self._seen_version = -1
        self._next_heartbeat = 0.0

    async def look(self) -> bool:
        """Look once; whether the ticket has finished and its delivery settled (or no
        daemon is left to write it)."""
        version = self._store.data_version()
        if version == self._seen_version:
            self._quiet_pace = min(self._quiet_pace * 2, max(self._interval, QUIET_CHECK_SECONDS))
        else:
            self._seen_version = version
            self._quiet_pace = self._interval
            self.ticket = ticket = await self._store.get_ticket(self.ticket.id)
            if self._printer is not None:
                self._printer.show(ticket, await self._gate_hold(ticket))
            if ticket.state.is_terminal and await self._delivery_settled():
                return True
        if self.ticket.state.is_terminal and self._heartbeat_due():
            return not await self._daemon_alive()  # nobody would write the delivery
        return False

    def pace(self) -> float:
        """How long to wait before the next look, unless woken."""
        counts = self.ticket.task_counts
        if counts.get("ready") or counts.get("blocked"):
            return max(self._interval, WAITING_CHECK_SECONDS)
        return self._quiet_pace

    async def _gate_hold(self, ticket: Ticket) -> str | None:
        # The gate matters only while some task waits to start.
        waiting = ticket.task_counts.get("ready") and not ticket.state.is_terminal
        beat = await self._store.read_heartbeat() if waiting and self._heartbeat_due() else None
        return gate_hold(ticket, beat, time.time())

    async def _delivery_settled(self) -> bool:
        return (await self._store.get_delivery(self.ticket.id)).settled

    def _heartbeat_due(self) -> bool:
        if time.monotonic() < self._next_heartbeat:
            return False
        self._next_heartbeat = time.monotonic() + GATE_CHECK_SECONDS
        return True

    async def _daemon_alive(self) -> bool:
        """Whether a daemon was heard from lately: on a shared database, any of the fleet."""
        if self._store.shared:
            return bool(await self._store.fleet(HEARTBEAT_STALE_SECONDS))
        beat = await self._store.read_heartbeat()
        return beat is not None and not heartbeat_is_stale(
            time.time() - float(beat["heartbeat_at"])
        )


async def _set_when_set(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def exit_code_for(state: TicketState) -> int:
    return 0 if state is TicketState.SUCCEEDED else 1
