"""The daemon's doorbell: a command that wrote to the queue rings it, and the daemon looks now.

SQLite tells one process nothing of another's commits: the daemon looks at ``data_version``
every 50 ms, so a ticket submitted to an idle daemon waited 25 ms on average, and up to 50,
before anything looked at it. The daemon also listens on a datagram socket in its home
(``HomeLayout.doorbell``); ``submit``, ``cancel`` and ``retry`` send it one byte once their
transaction has committed, and the daemon looks at once.

The bell is only a hint: a ring that is lost (no daemon, a full socket buffer, a home whose
path is too long for a socket's) costs the 50 ms look it saves, never a ticket, and the
daemon treats any ring, from anyone, as a reason to look, never as a fact. The socket is
the daemon's user's alone (mode 0600), like the rest of the home.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from pathlib import Path


def ring(path: Path) -> None:
    """Ring the doorbell at ``path``, if a daemon listens there; never wait, never fail."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as bell:
        bell.setblocking(False)
        bell.sendto(b"\0", os.fsencode(path))


class Doorbell:
    """The daemon's end: ``on_ring`` is called (on the loop) when a ring arrives.

    ``open`` binds the socket, replacing a stale one (only the holder of the home's lock
    opens it); when it cannot, it says why and the daemon goes on with its looks alone.
    """

    def __init__(self, path: Path, on_ring: Callable[[], None]) -> None:
        self.path = path
        self._on_ring = on_ring
        self._socket: socket.socket | None = None

    def open(self) -> str | None:
        """Listen; the reason (one sentence) when the doorbell cannot be had."""
        bell = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            bell.bind(os.fsencode(self.path))
            os.chmod(self.path, 0o600)
            bell.setblocking(False)
            asyncio.get_running_loop().add_reader(bell.fileno(), self._answer)
        except (OSError, ValueError) as exc:
            bell.close()
            return f"cannot listen on {self.path}: {getattr(exc, 'strerror', None) or exc}"
        self._socket = bell
        return None

    def close(self) -> None:
        bell, self._socket = self._socket, None
        if bell is None:
            return
        asyncio.get_running_loop().remove_reader(bell.fileno())
        bell.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _answer(self) -> None:
        assert self._socket is not None
        # Every ring waiting is answered by one look.
        with contextlib.suppress(OSError):
            while self._socket.recv(64):
                pass
        self._on_ring()
