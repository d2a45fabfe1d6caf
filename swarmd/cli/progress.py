"""Watching one ticket until it finishes: live progress on a terminal, plain lines otherwise."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TextIO

from swarmd.models import Ticket, TicketState
from swarmd.store import Store


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


class ProgressPrinter:
    """Prints a ticket's progress when it changes: one rewritten line on a TTY."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last = ""

    def show(self, ticket: Ticket) -> None:
        text = progress_text(ticket)
        if text == self._last:
            return
        self._last = text
        if self._tty:
            self._stream.write("\r\x1b[2K" + text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._tty and self._last:
            self._stream.write("\n")
            self._stream.flush()


async def follow_ticket(
    db_path: Path,
    ticket_id: int,
    *,
    printer: ProgressPrinter | None = None,
    interval: float = 0.25,
    stop: asyncio.Event | None = None,
) -> Ticket:
    """Poll the ticket (on its own connection) until it finishes or ``stop`` is set."""
    store = await Store.open(db_path)
    try:
        seen_version = -1
        ticket = await store.get_ticket(ticket_id)
        while True:
            version = store.data_version()
            if version != seen_version:
                seen_version = version
                ticket = await store.get_ticket(ticket_id)
                if printer is not None:
                    printer.show(ticket)
                if ticket.state.is_terminal:
                    return ticket
            if stop is not None and stop.is_set():
                return ticket
            await asyncio.sleep(interval)
    finally:
        await store.close()


def exit_code_for(state: TicketState) -> int:
    return 0 if state is TicketState.SUCCEEDED else 1
