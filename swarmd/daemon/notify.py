"""sd_notify without libsystemd: READY, WATCHDOG, STOPPING and STATUS for a Type=notify unit.

systemd passes the daemon a datagram socket in ``NOTIFY_SOCKET``; each message is one
datagram of ``KEY=value`` lines. Outside systemd there is no socket and every call is a
no-op, so the daemon notifies unconditionally.
"""

from __future__ import annotations

import socket


class SystemdNotifier:
    """Sends notifications to the socket systemd named (``None``: notifications go nowhere)."""

    def __init__(self, socket_path: str | None) -> None:
        self._address = _socket_address(socket_path)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, **fields: object) -> bool:
        """Send ``KEY=value`` fields in one datagram; ``True`` when it was sent."""
        if self._address is None or not fields:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        # A socket per message, as sd_notify does: a few microseconds, a watchdog ping
        # every few seconds, and nothing to close. Non-blocking: when systemd is slow to
        # drain its queue, a notification is dropped rather than stalling the event loop.
        kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
        try:
            with socket.socket(socket.AF_UNIX, kind) as sock:
                sock.sendto(message.encode(), self._address)
        except OSError:
            return False
        return True

    def ready(self) -> bool:
        """The daemon accepts work."""
        return self.notify(READY=1)

    def stopping(self) -> bool:
        """The daemon has begun shutting down."""
        return self.notify(STOPPING=1)

    def watchdog(self) -> bool:
        """The event loop is alive; systemd restarts the service if this stops coming."""
        return self.notify(WATCHDOG=1)

    def status(self, text: str) -> bool:
        """A one-line status that ``systemctl status`` shows."""
        return self.notify(STATUS=" ".join(text.splitlines()))


def _socket_address(socket_path: str | None) -> str | None:
    if not socket_path:
        return None
    if socket_path.startswith("@"):
        # An abstract socket: a leading NUL byte instead of a path in the filesystem.
        return "\0" + socket_path[1:]
    return socket_path


def watchdog_interval(
    watchdog_usec: str | None, watchdog_pid: str | None, own_pid: int
) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of ``WatchdogSec``, as sd_watchdog_enabled advises.

    ``None`` when no watchdog is set, the value is invalid, or ``WATCHDOG_PID`` names
    another process (the watchdog is meant for that one, not us).
    """
    if not watchdog_usec:
        return None
    try:
        usec = int(watchdog_usec)
        if watchdog_pid and int(watchdog_pid) != own_pid:
            return None
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2_000_000
