"""``swarmd logs``: tail the JSON-lines log, filtered, readable on a terminal or raw JSON."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from swarmd.cli.quoting import printable
from swarmd.errors import InputError
from swarmd.files import require_regular

LEVELS = ("debug", "info", "warning", "error", "critical")
_COLOURS = {"debug": "2", "info": "32", "warning": "33", "error": "31", "critical": "1;31"}


@dataclass(frozen=True, slots=True)
class LogQuery:
    ticket: int | None = None
    task: str | None = None
    level: str | None = None
    event: str | None = None

    def __post_init__(self) -> None:
        if self.level is not None and self.level.lower() not in LEVELS:
            raise InputError(f"unknown level {self.level!r} (one of {', '.join(LEVELS)})")

    def matches(self, entry: dict[str, Any]) -> bool:
        if self.level and LEVELS.index(str(entry.get("level", "info")).lower()) < LEVELS.index(
            self.level.lower()
        ):
            return False
        if self.event and entry.get("event") != self.event:
            return False
        ticket, task = task_of(entry)
        if self.ticket is not None and ticket != self.ticket:
            return False
        return not (self.task and task != self.task)


def task_of(entry: dict[str, Any]) -> tuple[int | None, str | None]:
    """The ticket and task an entry is about: ``task=4.copy`` or ``ticket=4 task=copy``."""
    task = entry.get("task")
    ticket = entry.get("ticket")
    if isinstance(task, str) and "." in task:
        head, _, name = task.partition(".")
        if head.isdigit():
            return int(head), name
    return (int(ticket) if isinstance(ticket, int | str) and str(ticket).isdigit() else None), (
        task if isinstance(task, str) else None
    )


def parse_line(line: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    return entry if isinstance(entry, dict) else None


def format_entry(entry: dict[str, Any], *, colour: bool) -> str:
    """One entry on one line; its values escaped (they may quote an agent's output)."""
    stamp = printable(str(entry.get("timestamp", "")))[11:23]
    level = printable(str(entry.get("level", "info")).lower())
    event = printable(str(entry.get("event", "")))
    rest = " ".join(
        printable(f"{k}={v}")
        for k, v in entry.items()
        if k not in ("timestamp", "level", "event") and v is not None
    )
    if colour:
        code = _COLOURS.get(level, "0")
        return f"\x1b[2m{stamp}\x1b[0m \x1b[{code}m{level:<7}\x1b[0m \x1b[1m{event}\x1b[0m {rest}"
    return f"{stamp} {level:<7} {event} {rest}"


def check_log_file(path: Path) -> None:
    """Refuse a log path that is not a regular file: a FIFO would block ``logs`` forever."""
    try:
        require_regular(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InputError(f"cannot read the log {path}: {exc.strerror}") from exc


def read_last(path: Path, query: LogQuery, lines: int) -> list[dict[str, Any]]:
    check_log_file(path)
    kept: deque[dict[str, Any]] = deque(maxlen=max(lines, 0))
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                entry = parse_line(line)
                if entry is not None and query.matches(entry):
                    kept.append(entry)
    except FileNotFoundError:
        return []
    return list(kept)


def follow_lines(path: Path, poll: float = 0.25) -> Iterator[str]:
    """New lines appended to ``path``, reopening it when rotation replaces the file."""
    handle: TextIO | None = None
    inode = None
    while True:
        if handle is None:
            try:
                handle = path.open(encoding="utf-8", errors="replace")
                inode = os.fstat(handle.fileno()).st_ino
                handle.seek(0, os.SEEK_END)
            except FileNotFoundError:
                time.sleep(poll)
                continue
        line = handle.readline()
        if line:
            yield line
            continue
        try:
            rotated = os.stat(path).st_ino != inode
        except FileNotFoundError:
            rotated = True
        if rotated:
            handle.close()
            handle = None
            inode = None
            # A rotated file starts from its beginning, so nothing written there is skipped.
            try:
                handle = path.open(encoding="utf-8", errors="replace")
                inode = os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                handle = None
            continue
        time.sleep(poll)


def tail(
    path: Path,
    query: LogQuery,
    *,
    lines: int,
    follow: bool,
    as_json: bool,
    out: TextIO = sys.stdout,
) -> None:
    colour = out.isatty() and not as_json

    def emit(entry: dict[str, Any]) -> None:
        out.write((json.dumps(entry) if as_json else format_entry(entry, colour=colour)) + "\n")
        out.flush()

    for entry in read_last(path, query, lines):
        emit(entry)
    if not follow:
        return
    for line in follow_lines(path):
        parsed = parse_line(line)
        if parsed is not None and query.matches(parsed):
            emit(parsed)
