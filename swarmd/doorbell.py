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

The other way round, a command that waits for a ticket (``submit --wait``) hangs its own
bell at the door: a ``FollowerBell``, a datagram socket in the abstract namespace, whose
address it sends to the doorbell with the ticket's id. When that ticket's delivery is
written (or has failed), the daemon rings every bell hung for it, once, and forgets them;
the follower looks at the store at once rather than at its next look. That too is only a
hint: a follower keeps looking on its own. An abstract socket has no file mode, so anyone
on the host may send to it: a follower's bell answers only datagrams sent from the doorbell's
own path, which only the daemon holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path

LOOK = b"\0"
"""A ring: look at the queue now."""

FOLLOW = b"F"
"""``F<ticket id>`` from a bound socket: ring that socket when the ticket's delivery settles."""

SETTLED = b"S"
"""What a follower's bell hears: the delivery it waits for is written, or failed."""

MAX_FOLLOWERS = 256
"""Bells the daemon keeps at most, for all tickets; a follower beyond them only looks."""

MAX_TICKET_DIGITS = 18
"""A request naming a longer number names no ticket: it is dropped."""


def ring(path: Path) -> None:
    """Ring the doorbell at ``path``, if a daemon listens there; never wait, never fail."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as bell:
        bell.setblocking(False)
        bell.sendto(LOOK, os.fsencode(path))


class Doorbell:
    """The daemon's end: ``on_ring`` is called (on the loop) when a ring arrives, and the
    bells of the followers of a ticket ring when ``tell_followers`` is called for it.

    ``open`` binds the socket, replacing a stale one (only the holder of the home's lock
    opens it); when it cannot, it says why and the daemon goes on with its looks alone.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._on_ring: Callable[[], None] = lambda: None
        self._socket: socket.socket | None = None
        self._followers: dict[int, set[str | bytes]] = {}

    def open(self, on_ring: Callable[[], None]) -> str | None:
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
        self._on_ring = on_ring
        self._socket = bell
        return None

    def close(self) -> None:
        bell, self._socket = self._socket, None
        self._followers.clear()
        if bell is None:
            return
        asyncio.get_running_loop().remove_reader(bell.fileno())
        bell.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def tell_followers(self, ticket_id: int) -> None:
        """Ring, once, the bell of every follower of ``ticket_id``; a gone one is skipped."""
        addresses = self._followers.pop(ticket_id, set())
        if self._socket is None:
            return
        for address in addresses:
            with contextlib.suppress(OSError):
                self._socket.sendto(SETTLED, address)

    def _answer(self) -> None:
        assert self._socket is not None
        # Every ring waiting is answered by one look; a follower's request is kept.
        look = False
        with contextlib.suppress(OSError):
            while True:
                data, address = self._socket.recvfrom(64)
                if data.startswith(FOLLOW) and address:
                    self._keep_follower(data[len(FOLLOW) :], address)
                else:
                    look = True
        if look:
            self._on_ring()

    def _keep_follower(self, ticket: bytes, address: str | bytes) -> None:
        if not ticket.isdigit() or len(ticket) > MAX_TICKET_DIGITS:
            return
        if sum(map(len, self._followers.values())) >= MAX_FOLLOWERS:
            return
        self._followers.setdefault(int(ticket), set()).add(address)


class FollowerBell:
    """A follower's bell: ``on_ring`` is called (on the loop) when the daemon's doorbell says
    the delivery of ``ticket_id`` settled; a datagram from anywhere else is dropped.

    ``hang`` sends its address to the doorbell at ``doorbell``; again at any time (a daemon
    that restarted has forgotten it). Nothing here fails: without a bell, the follower's
    own looks are all it has.
    """

    def __init__(self, doorbell: Path, ticket_id: int, on_ring: Callable[[], None]) -> None:
        self._doorbell = os.fsencode(doorbell)
        self._ticket_id = ticket_id
        self._on_ring = on_ring
        self._socket: socket.socket | None = None

    def open(self) -> None:
        bell = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            # The abstract namespace: no file to leave behind, no path too long.
            bell.bind(f"\0swarmd-follower-{os.getpid()}-{secrets.token_hex(8)}".encode())
            bell.setblocking(False)
            asyncio.get_running_loop().add_reader(bell.fileno(), self._heard)
        except OSError:
            bell.close()
            return
        self._socket = bell
        self.hang()

    @property
    def address(self) -> bytes | None:
        """Where the bell hangs (an abstract address), once open."""
        return None if self._socket is None else bytes(self._socket.getsockname())

    def hang(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.sendto(FOLLOW + str(self._ticket_id).encode(), self._doorbell)

    def close(self) -> None:
        bell, self._socket = self._socket, None
        if bell is not None:
            asyncio.get_running_loop().remove_reader(bell.fileno())
            bell.close()

    def _heard(self) -> None:
        assert self._socket is not None
        rung = False
        with contextlib.suppress(OSError):
            while True:
                _, sender = self._socket.recvfrom(64)
                rung = rung or (isinstance(sender, str) and os.fsencode(sender) == self._doorbell)
        if rung:
            self._on_ring()
