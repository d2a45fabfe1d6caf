"""Watching real child processes: a subreaper's orphan count, and pipes on which children say
they are ready, so that no test sleeps to wait for one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import psutil

PROCESS_TIMEOUT = 20.0
"""Seconds to wait for a process to start or report: generous, the machine may be loaded."""


def poll_until(condition: Callable[[], bool], *, timeout: float, interval: float = 0.02) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


async def poll_until_async(
    condition: Callable[[], bool], *, within: float, interval: float = 0.02
) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
    return True


def is_alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class OrphanWatch:
    """Counts this test's living descendants; the test process adopts every orphan."""

    def __init__(self) -> None:
        self._baseline = {p.pid for p in psutil.Process().children(recursive=True)}

    def survivors(self) -> list[psutil.Process]:
        alive = []
        for process in psutil.Process().children(recursive=True):
            if process.pid not in self._baseline and is_alive(process.pid):
                alive.append(process)
        return alive

    def wait_for_none(self, timeout: float) -> list[psutil.Process]:
        """Wait until no descendant lives; return the survivors if some still do."""
        poll_until(lambda: not self.survivors(), timeout=timeout)
        return self.survivors()

    def clean_up(self) -> None:
        for process in self.survivors():
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        poll_until(lambda: not self.survivors(), timeout=PROCESS_TIMEOUT)
        # Adopted orphans are our children now: reap them, by pid.
        for process in psutil.Process().children():
            if process.pid in self._baseline:
                continue
            # ChildProcessError: whoever spawned it has reaped it already.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(process.pid, os.WNOHANG)


class ReadyPipe:
    """A pipe whose write end a child inherits (``pass_fds``) to report lines to the test."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self._buffer = b""

    def read_line(self, timeout: float = PROCESS_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while (line := self._take_line()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no line from the child in time")
            select.select([self.read_fd], [], [], remaining)
            self._read_available()
        return line

    async def read_line_async(self, within: float = PROCESS_TIMEOUT) -> str:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(self.read_fd, readable.set)
        try:
            async with asyncio.timeout(within):
                while (line := self._take_line()) is None:
                    readable.clear()
                    if not self._read_available():
                        await readable.wait()
        finally:
            loop.remove_reader(self.read_fd)
        return line

    def _read_available(self) -> bool:
        try:
            chunk = os.read(self.read_fd, 4096)
        except BlockingIOError:
            return False
        if not chunk:
            raise EOFError("the child closed the pipe without a line")
        self._buffer += chunk
        return True

    def _take_line(self) -> str | None:
        line, newline, rest = self._buffer.partition(b"\n")
        if not newline:
            return None
        self._buffer = rest
        return line.decode()

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class SessionLeaders:
    """Starts processes as session leaders and, whatever a test did, kills their groups after."""

    def __init__(self) -> None:
        self._started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], **options: Any) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(argv, start_new_session=True, **options)
        self._started.append(process)
        return process

    def clean_up(self) -> None:
        for process in self._started:
            if process.returncode is None:
                # Not reaped by us, so the pid (and the group id) is still this process's,
                # even if it is a zombie whose children live on in its group.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=PROCESS_TIMEOUT)
            if process.stdout is not None:
                process.stdout.close()
