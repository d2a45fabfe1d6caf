"""How the daemon starts a worker process: exec a fresh interpreter, or fork a warm one.

    WorkerSpawner   what a ``WorkerSession`` asks: ``spawn_worker(...) -> WorkerProcess``
    ExecSpawner     ``python -m swarmd.worker`` through ``groups.spawn_process_group``
    ForkServer      asks the zygote (``swarmd.worker.forkserver``) to fork the worker; restarts a
                    zygote that died, and execs while none can be had

Either way the worker leads its own session and group, gets exactly the environment given,
appends its output to its log file, and dies with the daemon (see ``swarmd.worker.shim``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import psutil

from swarmd.errors import ProcessError
from swarmd.logs import get_logger
from swarmd.spawn.groups import (
    GroupLeader,
    ProcessIdentity,
    SpawnedProcess,
    WorkerProcess,
    process_handle,
    spawn_process_group,
)
from swarmd.wire.forkserver import (
    Exited,
    Reply,
    Spawned,
    SpawnFailed,
    SpawnRequest,
    decode_reply,
)

log = get_logger("swarmd.spawn.spawners")

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
REPLY_BYTES = 64 * 1024
"""The largest record the zygote sends; its messages are a few dozen bytes."""


class WorkerSpawner(Protocol):
    """Starts one worker process with its end of the channel."""

    async def spawn_worker(
        self,
        *,
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
        channel_fd: int,
        models: bool = True,
    ) -> WorkerProcess:
        """Start a worker in ``cwd`` with exactly ``env``; raise ``ProcessError`` if it can't.
        ``models``: the worker will call models (a fork server then has their stack loaded)."""
        ...


class ExecSpawner:
    """Each worker is a fresh ``python -m swarmd.worker``: slower to start, shares nothing."""

    def __init__(self, python: str = sys.executable) -> None:
        self._python = python

    async def spawn_worker(
        self,
        *,
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
        channel_fd: int,
        models: bool = True,
    ) -> WorkerProcess:
        del models  # an exec'd worker imports what its agent needs
        argv = [self._python, "-m", "swarmd.worker"]
        argv += ["--parent", str(os.getpid()), "--channel-fd", str(channel_fd)]
        return await spawn_process_group(
            argv, cwd=cwd, env=env, stdout_path=log_path, pass_fds=[channel_fd]
        )


class ForkedProcess(GroupLeader):
    """A worker forked by the zygote: not our child, so its exit comes from the zygote."""

    def __init__(
        self,
        identity: ProcessIdentity,
        exit_status: asyncio.Future[int],
    ) -> None:
        super().__init__(identity, process_handle(identity))
        self._exit_status = exit_status

    def __repr__(self) -> str:
        return f"<ForkedProcess pid={self.pid} returncode={self.returncode}>"

    @property
    def returncode(self) -> int | None:
        """The exit status once reaped: ``N`` for an exit code, ``-N`` for signal N."""
        return self._exit_status.result() if self._exit_status.done() else None

    async def wait(self) -> int:
        """Wait for the worker to exit and return its ``returncode``."""
        # Shielded: one waiter giving up (a grace period ending) must not cancel the status.
        return await asyncio.shield(self._exit_status)

    def set_returncode(self, returncode: int) -> None:
        """Record the exit status the zygote reported (the first report counts)."""
        if not self._exit_status.done():
            self._exit_status.set_result(returncode)


class _ZygoteLost(ProcessError):
    """The zygote went away (or stopped answering) before it answered a request."""


class ZygoteClient:
    """The daemon's end of one running zygote: its process, its control socket, and the
    requests in flight. (The zygote's own loop is ``swarmd.worker.forkserver.Zygote``.)"""

    def __init__(self, process: SpawnedProcess, control: socket.socket, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path
        self.ready = False
        self.lost = False
        self._closing = False
        self._control = control
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[ForkedProcess]] = {}
        self._workers: dict[int, ForkedProcess] = {}
        self._writable: asyncio.Future[None] | None = None
        self._reader = asyncio.create_task(self._read_replies(), name=f"forkserver-{self.pid}")

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def spawn_zygote(
        cls, *, python: str, env: Mapping[str, str], cwd: Path, log_path: Path
    ) -> ZygoteClient:
        """Start ``python -m swarmd.worker.forkserver``; it warms up while requests queue."""
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ProcessError(f"cannot create {log_path.parent}: {exc.strerror}") from exc
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # -P: the zygote's cwd must not shadow modules that workers import later.
            argv = [python, "-P", "-m", "swarmd.worker.forkserver", "--parent", str(os.getpid())]
            argv += ["--control-fd", str(theirs.fileno())]
            process = await spawn_process_group(
                argv, cwd=cwd, env=env, stdout_path=log_path, pass_fds=[theirs.fileno()]
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        return cls(process, ours, log_path)

    async def spawn_worker(
        self,
        *,
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
        channel_fd: int,
        models: bool = True,
    ) -> ForkedProcess:
        """Ask for one worker; ``_ZygoteLost`` if the zygote dies before it answers."""
        if self.lost:
            raise _ZygoteLost("the fork server has stopped")
        request_id = next(self._ids)
        reply: asyncio.Future[ForkedProcess] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = reply
        request = SpawnRequest(request_id, str(cwd), dict(env), str(log_path), models)
        try:
            await self._send(request.to_record(), channel_fd)
            return await reply
        finally:
            # If we stop waiting, a late "spawned" finds no reply and kills that worker.
            self._replies.pop(request_id, None)

    async def close(self, *, timeout: float) -> int:
        """Close the control socket so that the zygote exits; SIGKILL it after ``timeout``."""
        self._closing = True
        if not self.lost:
            with contextlib.suppress(OSError):
                self._control.shutdown(socket.SHUT_WR)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._reader)
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        return await self.process.wait()

    async def _send(self, record: bytes, channel_fd: int) -> None:
        loop = asyncio.get_running_loop()
        fd = self._control.fileno()
        while True:
            try:
                socket.send_fds(self._control, [record], [channel_fd])
                return
            except BlockingIOError:
                pass
            except OSError as exc:
                raise _ZygoteLost(f"the fork server is unreachable: {exc.strerror}") from exc
            self._writable = loop.create_future()
            loop.add_writer(fd, self._writable.set_result, None)
            try:
                await self._writable
            finally:
                loop.remove_writer(fd)
                self._writable = None

    async def _read_replies(self) -> None:
        loop = asyncio.get_running_loop()
        reason = "it exited (its control socket closed)"
        try:
            while record := await loop.sock_recv(self._control, REPLY_BYTES):
                reply = decode_reply(record)
                if reply is not None:
                    self._dispatch(reply)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = f"its control socket failed: {exc}"
        finally:
            self.abandon(reason)

    def _dispatch(self, reply: Reply) -> None:
        if isinstance(reply, Spawned):
            self._on_spawned(reply.id, reply.pid, reply.start_ticks)
        elif isinstance(reply, Exited):
            worker = self._workers.pop(reply.pid, None)
            if worker is not None:
                worker.set_returncode(reply.returncode)
        elif isinstance(reply, SpawnFailed):
            waiting = self._replies.get(reply.id) if reply.id is not None else None
            error = ProcessError(reply.error)
            if waiting is not None and not waiting.done():
                waiting.set_exception(error)
            else:
                log.error("forkserver_error", pid=self.pid, error=str(error))
        else:
            self.ready = True
            log.info("forkserver_ready", pid=self.pid, warm_up_s=reply.warm_up_s)

    def _on_spawned(self, request_id: int, pid: int, start_ticks: int) -> None:
        exit_status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        # psutil's own arithmetic, in this process: the identity matches what psutil says
        # of the live worker here, whatever the wall clock did since the zygote started.
        identity = ProcessIdentity(pid, start_ticks / CLOCK_TICKS + psutil.boot_time())
        worker = ForkedProcess(identity, exit_status)
        self._workers[pid] = worker
        reply = self._replies.get(request_id)
        if reply is None or reply.done():
            worker.signal_group(signal.SIGKILL)  # nobody waits for this worker any more
        else:
            reply.set_result(worker)

    def abandon(self, reason: str) -> None:
        """The zygote is gone or unusable: fail what waits on it, kill it and what it forked."""
        if self.lost:
            return
        self.lost = True
        if self._writable is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_writer(self._control.fileno())
            if not self._writable.done():
                self._writable.set_exception(_ZygoteLost(f"the fork server stopped: {reason}"))
        for reply in self._replies.values():
            if not reply.done():
                reply.set_exception(_ZygoteLost(f"the fork server stopped: {reason}"))
        # Its workers die of their parent-death signal; this makes sure of it, and their
        # exit statuses died with the zygote: report them as what ended them.
        for worker in self._workers.values():
            with contextlib.suppress(ProcessError):
                worker.signal_group(signal.SIGKILL)
            worker.lost_with_spawner = True
            worker.set_returncode(-signal.SIGKILL)
        self._report_loss(reason)
        self._workers.clear()
        with contextlib.suppress(ProcessError):
            self.process.signal_group(signal.SIGKILL)
        self._control.close()

    def _report_loss(self, reason: str) -> None:
        if self._closing:
            return
        if self.ready:
            killed = len(self._workers)
            log.warning("forkserver_lost", pid=self.pid, reason=reason, workers_killed=killed)
        else:
            log.error(
                "forkserver_start_failed", pid=self.pid, reason=reason, log=str(self.log_path)
            )


class ForkServer:
    """Workers forked from a warm zygote, with ``fallback`` (exec) whenever none can be had.

    ``start()`` launches the zygote without waiting for its warm-up: the first request
    queues on the control socket meanwhile. A zygote that dies takes its workers with it
    (their exits are reported as SIGKILL); the next spawn starts a new one. A zygote that
    died before it was ready may fail again: spawns exec for ``retry_start_after`` seconds
    before the next try. ``close()`` stops the zygote and awaits it.
    """

    def __init__(
        self,
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
        fallback: WorkerSpawner | None = None,
        python: str = sys.executable,
        reply_timeout: float = 30.0,
        retry_start_after: float = 30.0,
        close_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._env = dict(env)
        self._cwd = cwd
        self._log_path = log_path
        self._fallback = fallback or ExecSpawner(python)
        self._python = python
        self._reply_timeout = reply_timeout
        self._retry_start_after = retry_start_after
        self._close_timeout = close_timeout
        self._clock = clock
        self._zygote: ZygoteClient | None = None
        self._lock = asyncio.Lock()
        self._next_start_at = 0.0
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The running zygote's pid, or ``None`` when there is none."""
        zygote = self._zygote
        return zygote.pid if zygote is not None and not zygote.lost else None

    async def start(self) -> None:
        """Start the zygote if none runs; a failure is logged, and spawns exec meanwhile."""
        async with self._lock:
            await self._ensure_zygote()

    async def spawn_worker(
        self,
        *,
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
        channel_fd: int,
        models: bool = True,
    ) -> WorkerProcess:
        async with self._lock:
            zygote = await self._ensure_zygote()
        if zygote is not None:
            try:
                async with asyncio.timeout(self._reply_timeout):
                    return await zygote.spawn_worker(
                        cwd=cwd, env=env, log_path=log_path, channel_fd=channel_fd, models=models
                    )
            except TimeoutError:
                zygote.abandon(f"no answer within {self._reply_timeout:g} s")
            except _ZygoteLost:
                pass
        log.debug("worker_exec_fallback")
        return await self._fallback.spawn_worker(
            cwd=cwd, env=env, log_path=log_path, channel_fd=channel_fd, models=models
        )

    async def close(self) -> None:
        """Stop the zygote and wait for it; spawns after this exec."""
        async with self._lock:
            self._closed = True
            if self._zygote is not None:
                await self._retire()

    async def _ensure_zygote(self) -> ZygoteClient | None:
        zygote = self._zygote
        if zygote is not None and not zygote.lost:
            return zygote
        restarting = zygote is not None
        if zygote is not None:
            await self._retire()
            if not zygote.ready:
                # It died warming up and would likely die again: exec for a while.
                self._next_start_at = self._clock() + self._retry_start_after
        if self._closed or self._clock() < self._next_start_at:
            return None
        try:
            self._zygote = await ZygoteClient.spawn_zygote(
                python=self._python, env=self._env, cwd=self._cwd, log_path=self._log_path
            )
        except ProcessError as exc:
            self._next_start_at = self._clock() + self._retry_start_after
            log.error("forkserver_start_failed", error=str(exc))
            return None
        event = "forkserver_restarted" if restarting else "forkserver_started"
        log.info(event, pid=self._zygote.pid)
        return self._zygote

    async def _retire(self) -> None:
        zygote, self._zygote = self._zygote, None
        assert zygote is not None
        await zygote.close(timeout=self._close_timeout)


def spawner_for(
    worker_start: str, *, env: Mapping[str, str], home: Path, log_path: Path
) -> WorkerSpawner:
    """How workers start, per ``SWARMD_WORKER_START``: forked by a fork server (its own
    environment ``env``, scrubbed by the caller), or exec'd."""
    if worker_start == "exec":
        return ExecSpawner()
    return ForkServer(env=env, cwd=home, log_path=log_path)
