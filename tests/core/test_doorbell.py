"""The daemon's doorbell: rings reach the listener, a bell nobody answers costs nothing, and
the followers' bells hung at the door ring when their ticket's delivery settles."""

from __future__ import annotations

import asyncio
import socket
import stat
from pathlib import Path

from swarmd.doorbell import MAX_FOLLOWERS, Doorbell, FollowerBell, ring


async def rings_heard(path: Path, rings: int) -> int:
    heard = asyncio.Event()
    count = 0

    def answered() -> None:
        nonlocal count
        count += 1
        heard.set()

    doorbell = Doorbell(path)
    assert doorbell.open(answered) is None
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
    doorbell = Doorbell(path)
    assert doorbell.open(lambda: None) is None
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
    problem = Doorbell(deep / "doorbell.sock").open(lambda: None)
    assert problem is not None
    assert problem.startswith(f"cannot listen on {deep / 'doorbell.sock'}")


async def settle_a_moment() -> None:
    """Datagrams between sockets of this process arrive at once; the loop answers them on
    its next turns."""
    for _ in range(5):
        await asyncio.sleep(0.01)


async def test_a_followers_bell_rings_once_when_its_tickets_delivery_settles(
    tmp_path: Path,
) -> None:
    path = tmp_path / "doorbell.sock"
    looks: list[str] = []
    doorbell = Doorbell(path)
    assert doorbell.open(lambda: looks.append("look")) is None
    heard: dict[str, int] = {"7": 0, "8": 0}
    bells = [
        FollowerBell(path, 7, lambda: heard.__setitem__("7", heard["7"] + 1)),
        FollowerBell(path, 8, lambda: heard.__setitem__("8", heard["8"] + 1)),
    ]
    try:
        for bell in bells:
            bell.open()
        await settle_a_moment()
        assert looks == []  # hanging a bell is not a change of the queue
        doorbell.tell_followers(7)
        await settle_a_moment()
        assert heard == {"7": 1, "8": 0}
        doorbell.tell_followers(7)  # told once, then forgotten
        await settle_a_moment()
        assert heard == {"7": 1, "8": 0}
        bells[1].close()  # a follower that is gone is skipped
        doorbell.tell_followers(8)
        await settle_a_moment()
        assert heard == {"7": 1, "8": 0}
    finally:
        for bell in bells:
            bell.close()
        doorbell.close()


async def test_the_door_keeps_a_bounded_number_of_well_formed_requests(tmp_path: Path) -> None:
    path = tmp_path / "doorbell.sock"
    looks: list[str] = []
    doorbell = Doorbell(path)
    assert doorbell.open(lambda: looks.append("look")) is None
    heard: list[int] = []
    bells = [FollowerBell(path, 1, lambda: heard.append(1)) for _ in range(MAX_FOLLOWERS + 5)]
    try:
        for bell in bells:
            bell.open()
            # A socket's queue holds a few datagrams (net.unix.max_dgram_qlen): a request
            # beyond it is dropped, and that follower only looks. Here, each is answered.
            await asyncio.sleep(0.001)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as odd:
            odd.bind(b"\0swarmd-test-odd-requests")
            for request in (b"F", b"Fx1", b"F" + b"9" * 40, b"F-3"):
                odd.sendto(request, str(path))
                await asyncio.sleep(0.001)
        await settle_a_moment()
        doorbell.tell_followers(1)
        await settle_a_moment()
        assert len(heard) == MAX_FOLLOWERS  # the rest will see the end by looking
        assert looks == []  # malformed requests are neither kept nor taken for a ring
    finally:
        for bell in bells:
            bell.close()
        doorbell.close()


async def test_a_followers_bell_answers_the_doorbell_alone(tmp_path: Path) -> None:
    heard: list[int] = []
    bell = FollowerBell(tmp_path / "doorbell.sock", 3, lambda: heard.append(3))
    bell.open()  # nobody listens: hanging it fails quietly
    try:
        bell.hang()
        address = bell.address
        assert address is not None and address.startswith(b"\0")
        # Anyone on the host may send to an abstract socket: from another address, from none.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as stranger:
            stranger.sendto(b"S", address)
            stranger.bind(str(tmp_path / "stranger.sock"))
            stranger.sendto(b"S", address)
            await settle_a_moment()
            assert heard == []
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as door:
            door.bind(str(tmp_path / "doorbell.sock"))  # where the daemon's bell hangs
            door.sendto(b"S", address)
            await settle_a_moment()
            assert heard == [3]
    finally:
        bell.close()
