"""A command's stdout, kept as ``stdout.txt`` in its workspace: capped, and said so when cut.

Agent CLIs print their answer last, so a stdout over the cap keeps its start *and* its end:
the first ``head_bytes`` go to the file as they arrive (``tail -f`` shows a running agent),
the last ``tail_bytes`` are held in memory, and on ``finish()`` a marker line saying how much
was cut is written between the two. Reading never stops at the cap, so the command is never
blocked on a full pipe.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

from swarmd.outputs.paths import format_size

STDOUT_FILE = "stdout.txt"
MAX_STDOUT_BYTES = 8 * 1024 * 1024
"""The most of a command's stdout kept: the first 7 MiB and the last 1 MiB."""
TAIL_BYTES = 1024 * 1024

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def cut_marker(cut: int, head: int, tail: int) -> bytes:
    """The line that stands where ``cut`` bytes of stdout were left out."""
    return (
        f"\n[swarmd: stdout cut here: {cut:,} bytes left out between its first "
        f"{format_size(head)} and its last {format_size(tail)}]\n"
    ).encode()


class StdoutKeeper:
    """Writes what it is fed to ``workspace/stdout.txt``, keeping the head and the tail."""

    def __init__(
        self,
        workspace: Path,
        *,
        max_bytes: int = MAX_STDOUT_BYTES,
        tail_bytes: int = TAIL_BYTES,
    ) -> None:
        """Open ``stdout.txt`` (truncated: an inherited one is replaced); ``OSError`` if the
        workspace refuses it (it is a symlink, or not a regular file)."""
        self.path = workspace / STDOUT_FILE
        self._max = max_bytes
        self._head_room = max_bytes - tail_bytes
        self._tail_bytes = tail_bytes
        self._fd: int | None = os.open(self.path, _OPEN_FLAGS, 0o644)
        os.set_blocking(self._fd, True)
        self._head = bytearray()
        self._tail: collections.deque[bytes] = collections.deque()
        self._tail_size = 0
        self.total = 0  # bytes the command printed
        self.error: OSError | None = None  # the first write that failed, if one did

    @property
    def cut(self) -> int:
        """How many bytes are left out, so far."""
        return max(0, self.total - self._head_room - self._tail_size)

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self._head_room - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            self._write(chunk[:room])
            chunk = chunk[room:]
        if chunk:
            self._tail.append(chunk)
            self._tail_size += len(chunk)
            # Whole chunks are dropped from the front while the rest still fills the tail.
            while self._tail_size - len(self._tail[0]) >= self._tail_bytes:
                self._tail_size -= len(self._tail.popleft())

    def finish(self) -> bytes:
        """Write the tail (after the marker, if anything was cut), close the file, and return
        what it holds; an empty stdout leaves no file."""
        tail = b"".join(self._tail)
        if self.total > self._max:
            tail = tail[-self._tail_bytes :]
            self._tail_size = len(tail)
            tail = cut_marker(self.cut, self._head_room, self._tail_bytes) + tail
        self._write(tail)
        self._close()
        if self.total == 0:
            self.path.unlink(missing_ok=True)
        return bytes(self._head) + tail

    def _write(self, data: bytes) -> None:
        if self._fd is None or self.error is not None or not data:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self.error = exc  # a full disk: the command still runs; its result says so

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
