"""A command agent stopped while it runs: SIGTERM passed on, its stdout kept, no traceback."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from swarmd.agents.command import run_command
from tests.agents.test_command import WORKER_ENV, command_job

WRITE_PID_THEN_WAIT = """
import os, signal, sys, time
def on_term(*_):
    print("got SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("started", flush=True)
open(sys.argv[1], "w").write(str(os.getpid()))
time.sleep(60)
"""


async def started_pid(pid_file: Path) -> int:
    deadline = time.monotonic() + 10
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline, "the command never started"
        await asyncio.sleep(0.01)
    return int(pid_file.read_text())


def hold_loop_until_dead(pid: int) -> None:
    """Block the event loop (on purpose) until ``pid`` has died: the news of its exit then
    waits in the loop's queue behind whatever was queued before."""
    deadline = time.monotonic() + 5
    while not is_dead(pid):
        assert time.monotonic() < deadline, "the command never died"
        time.sleep(0.001)


def is_dead(pid: int) -> bool:
    """Gone, or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return True
    return stat.rsplit(b")", 1)[1].split()[0] == b"Z"


async def test_a_cancelled_command_gets_sigterm_and_what_it_printed_is_kept(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "pid"
    job = command_job(tmp_path / "ws", (sys.executable, "-c", WRITE_PID_THEN_WAIT, str(pid_file)))
    running = asyncio.create_task(run_command(job, WORKER_ENV))
    await started_pid(pid_file)

    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    assert (tmp_path / "ws" / "stdout.txt").read_text() == "started\ngot SIGTERM\n"


async def test_cancelling_a_command_already_reaped_but_not_yet_noticed_raises_nothing_else(
    tmp_path: Path,
) -> None:
    # The daemon's SIGTERM reaches the worker and its command together: the command may be
    # dead (and reaped) by the time the worker's cancellation asks it to stop.
    pid_file = tmp_path / "pid"
    job = command_job(tmp_path / "ws", (sys.executable, "-c", WRITE_PID_THEN_WAIT, str(pid_file)))
    running = asyncio.create_task(run_command(job, WORKER_ENV))
    pid = await started_pid(pid_file)

    running.cancel()  # queued first ...
    os.kill(pid, signal.SIGKILL)
    hold_loop_until_dead(pid)  # ... the exit's news after it

    with pytest.raises(asyncio.CancelledError):
        await running
