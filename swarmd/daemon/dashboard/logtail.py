"""The live log tail: new lines of ``logs/swarmd.jsonl`` as they are appended.

``LogTail.poll()`` reads what was appended since the last call (on a thread: the loop never
waits on the file), follows a rotation (the file replaced or cut shorter), and keeps the
newest ``keep`` lines for a page that opens later. Each line is parsed as the JSON the log
writes and passed through the redactor again before it leaves the daemon.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import deque
from pathlib import Path
from typing import Any

from swarmd.logs import Redactor

KEEP_LINES = 200
FIRST_READ_BYTES = 256 * 1024
"""How much of the file's end a new tail reads for its first lines."""
MAX_READ_BYTES = 1024 * 1024
"""At most this much is read per poll: a burst beyond it is skipped, not queued."""
LINE_CHARS = 2000


class LogTail:
    def __init__(self, path: Path, redactor: Redactor, *, keep: int = KEEP_LINES) -> None:
        self._path = path
        self._redactor = redactor
        self._recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._inode: int | None = None
        self._offset = 0
        self._partial = b""
        self._lock = asyncio.Lock()

    @property
    def recent(self) -> list[dict[str, Any]]:
        """The newest lines read so far, oldest first."""
        return list(self._recent)

    async def poll(self) -> list[dict[str, Any]]:
        """The lines appended since the last poll (on the first, the file's last lines)."""
        async with self._lock:
            raw = await asyncio.to_thread(self._read_new)
            lines = [self._entry(line) for line in raw]
            self._recent.extend(lines)
            return lines

    def _read_new(self) -> list[bytes]:
        try:
            with self._path.open("rb") as file:
                stat = os.fstat(file.fileno())
                first = self._inode is None
                if stat.st_ino != self._inode or stat.st_size < self._offset:
                    # A new file (rotated, or the first read): start near its end the first
                    # time, and at its start after a rotation.
                    self._offset = max(0, stat.st_size - FIRST_READ_BYTES) if first else 0
                    self._inode = stat.st_ino
                    self._partial = b""
                if stat.st_size - self._offset > MAX_READ_BYTES:
                    self._offset = stat.st_size - MAX_READ_BYTES
                    self._partial = b""
                    first = True  # begins inside a line
                file.seek(self._offset)
                data = file.read(stat.st_size - self._offset)
        except OSError:
            return []
        self._offset += len(data)
        if first and self._offset - len(data) > 0:
            # The read began inside a line: drop up to its end.
            _, _, data = data.partition(b"\n")
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        return [line for line in lines if line.strip()]

    def _entry(self, line: bytes) -> dict[str, Any]:
        text = line.decode("utf-8", "replace")
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return {"level": "info", "event": "", "text": self._clip(self._redactor.scrub(text))}
        timestamp = data.pop("timestamp", None)
        level = data.pop("level", "info")
        event = data.pop("event", "")
        data.pop("logger", None)
        fields = " ".join(f"{key}={compact(value)}" for key, value in data.items())
        return {
            "time": str(timestamp) if timestamp is not None else None,
            "level": str(level),
            "event": self._redactor.scrub(str(event)),
            "text": self._clip(self._redactor.scrub(fields)),
        }

    @staticmethod
    def _clip(text: str) -> str:
        return text if len(text) <= LINE_CHARS else text[: LINE_CHARS - 1] + "…"


def compact(value: Any) -> str:
    """A field's value as one short token: strings bare (quoted when they hold a space),
    everything else as JSON."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if (" " in value or not value) else value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
