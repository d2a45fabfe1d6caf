"""The daemon's doorbell: rings reach the listener, and a bell nobody answers costs nothing."""

from __future__ import annotations

import asyncio
import socket
import stat
from pathlib import Path

from swarmd.doorbell import Doorbell, ring


async def rings_heard(path: Path, rings: int) -> int:
    heard = asyncio.Event()
    count = 0

    def answered() -> None:
        nonlocal count
        count += 1
        heard.set()

    doorbell = Doorbell(path, answered)
    assert doorbell.open() is None
    try:
        for _ in range(rings):
            ring(path)
        async with asyncio.timeout(5):
            await heard.wait()
        await asyncio.sleep(0.05)
    finally:
        doorbell.close()
    return count


async def test_a_ring_reaches_the_listener_and_rings_together_are_answered_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "doorbell.sock"
    assert await rings_heard(path, 1) == 1
    # Rung before the loop could answer: one look answers all of them.
    assert await rings_heard(path, 20) == 1
    assert not path.exists()  # closed: the socket file is gone


async def test_the_listener_replaces_a_stale_socket_and_keeps_it_to_its_user(
    tmp_path: Path,
) -> None:
    path = tmp_path / "doorbell.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dead:
        dead.bind(str(path))  # a daemon that was killed left its socket behind
    doorbell = Doorbell(path, lambda: None)
    assert doorbell.open() is None
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        doorbell.close()


def test_ringing_with_nobody_listening_does_nothing(tmp_path: Path) -> None:
    ring(tmp_path / "doorbell.sock")  # no such socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dead:
        dead.bind(str(tmp_path / "stale.sock"))
    ring(tmp_path / "stale.sock")  # a socket nobody reads any more
    ring(tmp_path / ("x" * 200))  # too long for a socket's address
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stale.sock"]


async def test_a_doorbell_that_cannot_be_had_says_why(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    problem = Doorbell(deep / "doorbell.sock", lambda: None).open()
    assert problem is not None
    assert problem.startswith(f"cannot listen on {deep / 'doorbell.sock'}")
