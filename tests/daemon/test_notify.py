"""sd_notify over a real AF_UNIX datagram socket, as systemd's NOTIFY_SOCKET is."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmd.daemon.notify import SystemdNotifier, watchdog_interval


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = tmp_path / "notify"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(5)
    try:
        yield str(path), receiver
    finally:
        receiver.close()


@pytest.fixture
def abstract_notify_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"swarmd-test-{uuid.uuid4().hex}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name)
    receiver.settimeout(5)
    try:
        yield "@" + name, receiver
    finally:
        receiver.close()


def test_ready_is_sent(notify_socket: tuple[str, socket.socket]) -> None:
    path, receiver = notify_socket
    assert SystemdNotifier(path).ready()
    assert receiver.recv(4096) == b"READY=1"


def test_watchdog_is_sent(notify_socket: tuple[str, socket.socket]) -> None:
    path, receiver = notify_socket
    assert SystemdNotifier(path).watchdog()
    assert receiver.recv(4096) == b"WATCHDOG=1"


def test_stopping_is_sent(notify_socket: tuple[str, socket.socket]) -> None:
    path, receiver = notify_socket
    assert SystemdNotifier(path).stopping()
    assert receiver.recv(4096) == b"STOPPING=1"


def test_status_is_one_line(notify_socket: tuple[str, socket.socket]) -> None:
    path, receiver = notify_socket
    assert SystemdNotifier(path).status("3 workers\nqueue 7")
    assert receiver.recv(4096) == b"STATUS=3 workers queue 7"


def test_several_fields_go_in_one_datagram(notify_socket: tuple[str, socket.socket]) -> None:
    path, receiver = notify_socket
    notifier = SystemdNotifier(path)
    assert notifier.notify(READY=1, STATUS="accepting work")
    assert receiver.recv(4096) == b"READY=1\nSTATUS=accepting work"


def test_one_notifier_sends_many_messages(notify_socket: tuple[str, socket.socket]) -> None:
    path, receiver = notify_socket
    notifier = SystemdNotifier(path)
    notifier.ready()
    notifier.watchdog()
    notifier.stopping()
    assert [receiver.recv(4096) for _ in range(3)] == [b"READY=1", b"WATCHDOG=1", b"STOPPING=1"]


def test_abstract_socket_is_reached(abstract_notify_socket: tuple[str, socket.socket]) -> None:
    address, receiver = abstract_notify_socket
    assert SystemdNotifier(address).ready()
    assert receiver.recv(4096) == b"READY=1"


def test_without_a_socket_nothing_is_sent() -> None:
    notifier = SystemdNotifier(None)
    assert not notifier.enabled
    assert notifier.ready() is False
    assert SystemdNotifier("").watchdog() is False


def test_a_send_error_returns_false_instead_of_raising(tmp_path: Path) -> None:
    notifier = SystemdNotifier(str(tmp_path / "nobody-listens"))
    assert notifier.enabled
    assert notifier.ready() is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 15.0),
        ("30000000", "", 15.0),
        ("30000000", str(os.getpid()), 15.0),
        ("1000", None, 0.0005),
        ("30000000", "1", None),
        (None, None, None),
        ("", None, None),
        ("0", None, None),
        ("-5", None, None),
        ("soon", None, None),
        ("30000000", "someone", None),
    ],
)
def test_watchdog_interval_is_half_the_timeout_when_meant_for_us(
    usec: str | None, pid: str | None, expected: float | None
) -> None:
    assert watchdog_interval(usec, pid, os.getpid()) == expected
