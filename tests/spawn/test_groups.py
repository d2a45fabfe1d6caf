"""Signalling and killing whole process groups; never a stranger that reused a pid."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from swarmd.spawn.groups import (
    ProcessIdentity,
    SpawnedProcess,
    describe_exit,
    identify,
    is_same_process,
    kill_stale_group,
    spawn_process_group,
    terminate_group,
)
from tests.support.child_processes import (
    PROCESS_TIMEOUT,
    OrphanWatch,
    ReadyPipe,
    SessionLeaders,
    is_alive,
    poll_until,
    poll_until_async,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux processes")

MB = 1024 * 1024

STUBBORN = (
    "import os, signal, sys\n"
    "fd = int(sys.argv[1])\n"
    "signal.signal(signal.SIGTERM, lambda *_: os.write(fd, b'term\\n'))\n"
    "os.write(fd, b'up\\n')\n"
    "while True:\n"
    "    signal.pause()\n"
)
"""A worker that reports every SIGTERM and carries on."""


async def spawn_stubborn(tmp_path: Path, pipe: ReadyPipe) -> SpawnedProcess:
    proc = await spawn_process_group(
        [sys.executable, "-c", STUBBORN, str(pipe.write_fd)],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        stdout_path=tmp_path / "worker.log",
        pass_fds=(pipe.write_fd,),
    )
    assert await pipe.read_line_async() == "up"
    return proc


async def spawn_shell(tmp_path: Path, pipe: ReadyPipe, script: str) -> SpawnedProcess:
    """Run ``script`` in sh; ``$READY`` is a path to write ready lines to."""
    return await spawn_process_group(
        ["sh", "-c", script],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "READY": f"/dev/fd/{pipe.write_fd}"},
        stdout_path=tmp_path / "worker.log",
        pass_fds=(pipe.write_fd,),
    )


async def test_cooperative_group_exits_on_sigterm_without_waiting_for_the_grace(
    tmp_path: Path, ready_pipe: ReadyPipe
) -> None:
    proc = await spawn_shell(tmp_path, ready_pipe, 'echo up > "$READY"; exec sleep 60')
    await ready_pipe.read_line_async()
    started = time.monotonic()
    returncode = await terminate_group(proc, grace=30)
    assert returncode == -signal.SIGTERM
    assert time.monotonic() - started < 10


async def test_group_ignoring_sigterm_is_sigkilled_after_the_grace(
    tmp_path: Path, ready_pipe: ReadyPipe
) -> None:
    proc = await spawn_stubborn(tmp_path, ready_pipe)
    started = time.monotonic()
    returncode = await terminate_group(proc, grace=0.3)
    assert returncode == -signal.SIGKILL
    assert time.monotonic() - started >= 0.3
    assert await ready_pipe.read_line_async() == "term"


async def test_skip_grace_event_cuts_the_wait_short(tmp_path: Path, ready_pipe: ReadyPipe) -> None:
    proc = await spawn_stubborn(tmp_path, ready_pipe)
    skip = asyncio.Event()
    termination = asyncio.create_task(terminate_group(proc, grace=60, skip_grace=skip))
    assert await ready_pipe.read_line_async() == "term"
    skip.set()
    assert await asyncio.wait_for(termination, PROCESS_TIMEOUT) == -signal.SIGKILL


async def test_children_left_behind_by_an_exited_leader_are_killed(
    tmp_path: Path, ready_pipe: ReadyPipe, orphans: OrphanWatch
) -> None:
    proc = await spawn_shell(tmp_path, ready_pipe, 'sleep 60 & echo $! > "$READY"')
    leftover = int(await ready_pipe.read_line_async())
    assert await proc.wait() == 0
    assert is_alive(leftover)

    assert await terminate_group(proc, grace=30) == 0

    assert await poll_until_async(lambda: not is_alive(leftover), within=PROCESS_TIMEOUT)


async def test_children_that_outlive_a_sigtermed_leader_are_killed(
    tmp_path: Path, ready_pipe: ReadyPipe, orphans: OrphanWatch
) -> None:
    # The child reports its pid only once it ignores SIGTERM.
    script = """sh -c 'trap "" TERM; echo $$ > "$READY"; exec sleep 60' & wait"""
    proc = await spawn_shell(tmp_path, ready_pipe, script)
    stubborn_child = int(await ready_pipe.read_line_async())

    assert await terminate_group(proc, grace=30) == -signal.SIGTERM

    assert await poll_until_async(lambda: not is_alive(stubborn_child), within=PROCESS_TIMEOUT)


async def test_cancelled_termination_still_kills_the_group(
    tmp_path: Path, ready_pipe: ReadyPipe
) -> None:
    proc = await spawn_stubborn(tmp_path, ready_pipe)
    termination = asyncio.create_task(terminate_group(proc, grace=60))
    assert await ready_pipe.read_line_async() == "term"
    termination.cancel()
    with pytest.raises(asyncio.CancelledError):
        await termination
    assert await asyncio.wait_for(proc.wait(), PROCESS_TIMEOUT) == -signal.SIGKILL


async def test_signal_group_reports_a_group_that_is_gone(tmp_path: Path) -> None:
    proc = await spawn_process_group(
        ["true"], cwd=tmp_path, env={"PATH": os.environ["PATH"]}, stdout_path=tmp_path / "log"
    )
    await proc.wait()
    assert proc.signal_group(signal.SIGTERM) is False


async def test_signal_group_never_signals_a_stranger_holding_the_pid(
    tmp_path: Path, ready_pipe: ReadyPipe
) -> None:
    proc = await spawn_stubborn(tmp_path, ready_pipe)
    ours = proc.identity
    stranger = await asyncio.create_subprocess_exec("sleep", "60", start_new_session=True)
    try:
        # As if our worker had been reaped and a stranger's session had taken its pid.
        proc.pid = proc.pgid = stranger.pid
        proc.identity = ProcessIdentity(stranger.pid, ours.create_time - 1.0)
        assert proc.signal_group(signal.SIGKILL) is False
        assert proc.tree_rss_bytes() == 0
        assert is_alive(stranger.pid)
    finally:
        stranger.kill()
        await stranger.wait()
        os.killpg(ours.pid, signal.SIGKILL)
        await proc.wait()


def start_stale_group(
    leaders: SessionLeaders, pipe: ReadyPipe, *, leader_exits: bool = False
) -> tuple[subprocess.Popen[bytes], int]:
    """A worker left by a dead daemon: a session leader with a child in its group.

    With ``leader_exits``, the leader exits at once and stays a zombie until reaped.
    """
    then = "exit" if leader_exits else "wait"
    leader = leaders.start(
        ["sh", "-c", f"sleep 60 & echo $! > /dev/fd/{pipe.write_fd}; {then}"],
        pass_fds=(pipe.write_fd,),
    )
    return leader, int(pipe.read_line())


def test_stale_group_of_the_recorded_process_is_killed(
    ready_pipe: ReadyPipe, leaders: SessionLeaders
) -> None:
    leader, child = start_stale_group(leaders, ready_pipe)
    identity = identify(leader.pid)
    assert identity is not None

    assert kill_stale_group(identity) is True

    assert leader.wait(timeout=PROCESS_TIMEOUT) == -signal.SIGKILL
    assert poll_until(lambda: not is_alive(child), timeout=PROCESS_TIMEOUT)


def test_stale_group_sweep_never_touches_a_process_that_reused_the_pid(
    ready_pipe: ReadyPipe, leaders: SessionLeaders
) -> None:
    unrelated, child = start_stale_group(leaders, ready_pipe)
    current = identify(unrelated.pid)
    assert current is not None
    recorded = ProcessIdentity(unrelated.pid, current.create_time - 5.0)

    assert kill_stale_group(recorded) is False

    assert is_alive(unrelated.pid)
    assert is_alive(child)


def test_stale_group_sweep_of_a_dead_process_kills_nothing() -> None:
    exited = subprocess.Popen(["true"])
    exited.wait(timeout=PROCESS_TIMEOUT)
    assert kill_stale_group(ProcessIdentity(exited.pid, time.time() - 1)) is False


def test_identity_matches_only_the_same_process() -> None:
    me = identify(os.getpid())
    assert me is not None
    assert is_same_process(me)
    assert not is_same_process(ProcessIdentity(me.pid, me.create_time + 1.0))


@pytest.mark.parametrize("pid", [0, -1])
def test_stale_group_sweep_refuses_pids_that_name_groups(pid: int) -> None:
    # killpg(0) would be our own group: a corrupt record must not turn into that.
    assert kill_stale_group(ProcessIdentity(pid, 0.0)) is False


def test_stale_group_sweep_refuses_the_daemons_own_group() -> None:
    me = identify(os.getpid())
    assert me is not None
    assert kill_stale_group(me) is False


def test_identity_of_a_pid_nobody_holds_is_none() -> None:
    assert identify(2**31 - 1) is None
    assert identify(0) is None
    assert identify(-1) is None
    assert not is_same_process(ProcessIdentity(2**31 - 1, time.time()))


ALLOCATE_AND_WAIT = (
    "import os, sys, time\n"
    "held = b'x' * (50 * 1024 * 1024)\n"
    "os.write(int(sys.argv[1]), b'allocated\\n')\n"
    "time.sleep(60)\n"
)


async def test_tree_rss_counts_the_memory_of_descendants(
    tmp_path: Path, ready_pipe: ReadyPipe
) -> None:
    allocator = tmp_path / "allocate.py"
    allocator.write_text(ALLOCATE_AND_WAIT)
    script = f"{sys.executable} {allocator} {ready_pipe.write_fd} & wait"
    proc = await spawn_shell(tmp_path, ready_pipe, script)
    try:
        await ready_pipe.read_line_async()
        leader_rss = psutil.Process(proc.pid).memory_info().rss
        assert leader_rss < 20 * MB
        assert proc.tree_rss_bytes() >= 50 * MB + leader_rss
    finally:
        await terminate_group(proc, grace=0)
    assert proc.tree_rss_bytes() == 0


async def test_tree_cpu_use_is_a_number_from_the_second_call(
    tmp_path: Path, ready_pipe: ReadyPipe
) -> None:
    proc = await spawn_shell(tmp_path, ready_pipe, 'echo up > "$READY"; exec sleep 60')
    try:
        await ready_pipe.read_line_async()
        assert proc.tree_usage()[1] == 0.0
        assert proc.tree_usage()[1] >= 0.0
    finally:
        await terminate_group(proc, grace=0)


async def test_child_subreaper_adopts_orphaned_grandchildren(
    tmp_path: Path, ready_pipe: ReadyPipe, orphans: OrphanWatch
) -> None:
    proc = await spawn_shell(tmp_path, ready_pipe, 'sleep 60 & echo $! > "$READY"')
    orphan = int(await ready_pipe.read_line_async())
    await proc.wait()
    assert await poll_until_async(
        lambda: psutil.Process(orphan).ppid() == os.getpid(), within=PROCESS_TIMEOUT
    )
    assert [p.pid for p in orphans.survivors()] == [orphan]


@pytest.mark.parametrize(
    ("returncode", "description"),
    [
        (0, "exit code 0"),
        (3, "exit code 3"),
        (-9, "signal 9 (SIGKILL)"),
        (-15, "signal 15 (SIGTERM)"),
        (-200, "signal 200"),
    ],
)
def test_exit_is_described_as_code_or_signal(returncode: int, description: str) -> None:
    assert describe_exit(returncode) == description


def test_zombie_is_not_the_same_process_any_more(
    ready_pipe: ReadyPipe, leaders: SessionLeaders
) -> None:
    leader, _ = start_stale_group(leaders, ready_pipe, leader_exits=True)
    identity = identify(leader.pid)
    assert identity is not None
    assert poll_until(lambda: not is_alive(leader.pid), timeout=PROCESS_TIMEOUT)
    assert not is_same_process(identity)


def test_stale_group_whose_leader_is_a_zombie_is_still_killed(
    ready_pipe: ReadyPipe, orphans: OrphanWatch, leaders: SessionLeaders
) -> None:
    leader, child = start_stale_group(leaders, ready_pipe, leader_exits=True)
    identity = identify(leader.pid)
    assert identity is not None
    assert poll_until(lambda: not is_alive(leader.pid), timeout=PROCESS_TIMEOUT)

    assert kill_stale_group(identity) is True

    assert poll_until(lambda: not is_alive(child), timeout=PROCESS_TIMEOUT)


def test_stale_group_whose_leader_was_reaped_is_still_killed(
    ready_pipe: ReadyPipe, orphans: OrphanWatch, leaders: SessionLeaders
) -> None:
    # The window: a worker sent its result and exited, the daemon died before it swept
    # the group, and the worker's background child lives on with no leader.
    leader, child = start_stale_group(leaders, ready_pipe, leader_exits=True)
    identity = identify(leader.pid)
    assert identity is not None
    assert leader.wait(timeout=PROCESS_TIMEOUT) == 0  # reaped: the pid names nobody now
    assert is_alive(child)

    assert kill_stale_group(identity) is True

    assert poll_until(lambda: not is_alive(child), timeout=PROCESS_TIMEOUT)


def test_stale_group_sweep_spares_a_process_older_than_the_recorded_leader(
    ready_pipe: ReadyPipe, orphans: OrphanWatch, leaders: SessionLeaders
) -> None:
    leader, child = start_stale_group(leaders, ready_pipe, leader_exits=True)
    identity = identify(leader.pid)
    assert identity is not None
    assert leader.wait(timeout=PROCESS_TIMEOUT) == 0
    # Recorded as started after the child: then the child cannot be the worker's.
    later = ProcessIdentity(identity.pid, identity.create_time + 3600)

    assert kill_stale_group(later) is False

    assert is_alive(child)
