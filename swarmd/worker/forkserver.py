"""The fork server ("zygote"): a warm process that forks a worker for each task.

Starting ``python -m swarmd.worker`` costs about 100 ms of CPU (the interpreter, asyncio,
httpx, swarmd's own modules) before the task does anything; forking from a process that has
already imported all of it costs a few. The daemon starts one zygote (``swarmd.spawn.spawners``
is its side) as::

    python -P -m swarmd.worker.forkserver --parent DAEMON_PID --control-fd N

It arms the parent-death shim for the daemon, imports what every worker uses, says it is
ready, and then serves the control socket (its records: ``swarmd.wire.forkserver``),
importing what the workers that call models use while no request waits, and then, still
while none waits, rehearsing a command job (``swarmd.worker.rehearsal``). The zygote exits
when the daemon closes the socket; it ignores SIGTERM and SIGINT, so that a signal meant for the
whole service (``KillMode=control-group``, a terminal's ^C) cannot kill it, and with it
every worker, before the daemon has given them their grace period.

Why no event loop here: a fork from inside a running asyncio loop hands the child the
parent's selector, self-pipe and signal wake-up fd. The zygote waits with ``selectors`` and
learns of its children's exits through ``signal.set_wakeup_fd``; it may ``waitpid(-1)``
because every child it has is a worker it forked (the daemon itself never does). The
rehearsal's event loop is closed, and the signals it touched put back, before the zygote
serves another request: no fork happens while it runs.

The death chain: the daemon dies -> the zygote gets its parent-death signal and kills its
own group (itself, and a worker forked a moment ago that has not left it yet) -> each
worker's parent has died, so each gets its own parent-death signal and kills its group.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

from swarmd.wire.forkserver import (
    Exited,
    Ready,
    Reply,
    Spawned,
    SpawnFailed,
    SpawnRequest,
    decode,
    encode_reply,
    request_id,
)
from swarmd.worker.main import leave_out_httpx_command_line
from swarmd.worker.shim import arm_parent_death

PRELOADED_MODULES = (
    "asyncio",
    "concurrent.futures.thread",
    "swarmd.worker.main",
    "swarmd.agents.echo",
    "swarmd.agents.command",
    "swarmd.outputs",
)
"""What every worker imports: imported before the zygote says it is ready."""

MODEL_MODULES = (
    "ssl",
    "httpx",
    # httpx imports its transport's stack on the first client, and that stack picks its
    # async backend on the first request: both would otherwise be paid by every worker.
    "httpcore",
    "anyio",
    "anyio._backends._asyncio",
    "certifi",
    "swarmd.llm",
    "swarmd.agents.llm",
    "swarmd.agents.planner",
    "swarmd.agents.verify",
    "swarmd.llm.tls:prepare",  # and the clients' TLS contexts made, once
)
"""What the workers that call models import besides (~85 ms of a ~100 ms warm-up). The
zygote imports it after it said it is ready, a module at a time whenever no request came for
``LATER_AFTER_IDLE`` seconds, and all of what is left before it forks a worker whose request
says ``models``: command tasks never wait for a stack they do not use, and a burst of their
spawns is not slowed down by it."""

REHEARSAL = "swarmd.worker.rehearsal:rehearse"
"""Last of what the zygote does while idle, and never before a spawn: one command job served
by the worker's own code here, so that what its first run writes into the zygote's memory
(quickened bytecode, the type cache, modules' caches) is not copied into every worker."""

LATER_AFTER_IDLE = 0.1

MAX_RECORD_BYTES = 1024 * 1024
"""The largest control record read; a spawn request is a few kB (mostly the environment)."""

WORKER_PROCESS_NAME = b"swarmd-worker"
"""A forked worker's command line is the zygote's: ``ps -o comm`` tells them apart."""

INTERNAL_ERROR_EXIT = 70  # EX_SOFTWARE: the forked child failed before or around the worker


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers


class Zygote:
    """The warm process's loop: fork a worker per request, report each one's exit.

    ``worker_handlers`` are the stop signals' handlers a worker starts with: the ones this
    process was started with, as an exec'd worker would have them.
    """

    def __init__(
        self,
        control: socket.socket,
        worker_handlers: dict[int, _Handler],
        later_modules: tuple[str, ...] = (*MODEL_MODULES, REHEARSAL),
    ) -> None:
        self._control = control
        self._worker_handlers = worker_handlers
        self._later_modules = list(later_modules)
        self._selector = selectors.DefaultSelector()
        self._wakeup_read, self._wakeup_write = os.pipe()
        for fd in (self._wakeup_read, self._wakeup_write):
            os.set_blocking(fd, False)
        self._children: set[int] = set()

    def serve(self) -> int:
        """Serve until the daemon closes the control socket; the exit status of the zygote."""
        # The handler does nothing: its C half writes to the wake-up fd, which ends select().
        signal.signal(signal.SIGCHLD, _ignore_signal)
        signal.set_wakeup_fd(self._wakeup_write, warn_on_full_buffer=False)
        self._selector.register(self._control, selectors.EVENT_READ)
        self._selector.register(self._wakeup_read, selectors.EVENT_READ)
        try:
            while True:
                events = self._selector.select(LATER_AFTER_IDLE if self._later_modules else None)
                if not events and self._later_modules:
                    self.import_later(1)
                    continue
                for key, _ in events:
                    if key.fileobj is self._wakeup_read:
                        self._drain_wakeups()
                    elif not self.handle_request():
                        return 0
                self.reap_children()
        except ConnectionError:
            return 0  # the daemon is gone; our parent-death signal is on its way
        finally:
            signal.set_wakeup_fd(-1)

    def announce_ready(self, warm_up_s: float) -> None:
        self._send(Ready(os.getpid(), round(warm_up_s, 3)))

    def handle_request(self) -> bool:
        """Read one record and act on it; ``False`` at the end of the stream."""
        data, fds, flags, _ = socket.recv_fds(self._control, MAX_RECORD_BYTES, 4)
        if not data and not fds:
            return False
        try:
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                raise ValueError("a control record was truncated")
            request = SpawnRequest.from_message(decode(data))
            if len(fds) != 1:
                raise ValueError("a spawn request came without exactly one channel fd")
        except ValueError as exc:
            _close_all(fds)
            self._send(SpawnFailed(request_id(data), str(exc)))
            return True
        if request.models:
            self.import_models()
        try:
            pid = self.fork_worker(request, fds[0])
        except OSError as exc:
            self._send(SpawnFailed(request.id, _spawn_failure(request, exc)))
            return True
        finally:
            _close_all(fds)
        self._children.add(pid)
        try:
            # Read while the child cannot have been reaped (only we reap it): the pid is its.
            started = start_ticks(pid)
        except (OSError, ValueError, IndexError) as exc:
            os.killpg(pid, signal.SIGKILL)  # a worker the daemon cannot identify must not run
            self._send(SpawnFailed(request.id, f"cannot read {pid}: {exc}"))
            return True
        self._send(Spawned(request.id, pid, started))
        return True

    def fork_worker(self, request: SpawnRequest, channel_fd: int) -> int:
        """Fork a worker for ``request``; return once it leads its own session."""
        # Opened here rather than in the child, so that a bad path is reported as an error.
        log_fd = os.open(request.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        cwd_fd = -1
        try:
            cwd_fd = os.open(request.cwd, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            settled_read, settled_write = os.pipe()
            # Objects made since the last fork are frozen too, so the child's collections
            # never write to pages it shares with us (copy-on-write would copy them).
            gc.freeze()
            pid = os.fork()
            if pid == 0:
                self._become_worker(request, channel_fd, log_fd, cwd_fd, settled_write)
            os.close(settled_write)
            # The child closes its end once it has left our session: until then a killpg of
            # its pid would find no such group, and the daemon's signal would be lost.
            with contextlib.suppress(OSError):
                os.read(settled_read, 1)
            os.close(settled_read)
            return pid
        finally:
            os.close(log_fd)
            if cwd_fd >= 0:
                os.close(cwd_fd)

    @property
    def later(self) -> tuple[str, ...]:
        """What is left for later, in order."""
        return tuple(self._later_modules)

    def import_models(self) -> None:
        """Import all that is left for later but the rehearsal, which waits for a quiet
        moment: a worker that calls models waits for its stack, not for the rehearsal."""
        self.import_later(len([entry for entry in self._later_modules if entry != REHEARSAL]))

    def import_later(self, count: int) -> None:
        """Import the next ``count`` of the modules left for later (``module:function``:
        and call it). One that fails is written to the log, and the rest are left to the
        workers that need them."""
        try:
            while count > 0 and self._later_modules:
                name, _, function = self._later_modules.pop(0).partition(":")
                module = importlib.import_module(name)
                if function:  # "module:function": imported, then called
                    getattr(module, function)()
                count -= 1
        except Exception:
            traceback.print_exc()
            sys.stderr.flush()
            self._later_modules.clear()

    def reap_children(self) -> None:
        """Report every child that has exited."""
        while self._children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self._children.clear()
                return
            if pid == 0:
                return
            self._children.discard(pid)
            returncode = os.waitstatus_to_exitcode(status)
            self._send(Exited(pid, returncode))

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wakeup_read, 4096):
                pass

    def _send(self, reply: Reply) -> None:
        self._control.sendall(encode_reply(reply))

    def _become_worker(
        self,
        request: SpawnRequest,
        channel_fd: int,
        log_fd: int,
        cwd_fd: int,
        settled_write: int,
    ) -> NoReturn:
        """In the forked child: become a worker, as ``python -m swarmd.worker`` would."""
        code = INTERNAL_ERROR_EXIT
        try:
            zygote_pid = os.getppid()
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for signum, handler in self._worker_handlers.items():
                signal.signal(signum, handler)
            os.setsid()
            arm_parent_death(zygote_pid)
            os.close(settled_write)
            self._selector.close()
            self._control.close()
            os.close(self._wakeup_read)
            os.close(self._wakeup_write)
            _redirect_output(log_fd)
            os.fchdir(cwd_fd)
            # Every fd but 0-2 and the channel goes: the zygote's log, other requests'
            # channel fds, the cwd fd. None of them belongs to a Python object any more.
            os.closerange(3, channel_fd)
            os.closerange(channel_fd + 1, os.sysconf("SC_OPEN_MAX"))
            os.environ.clear()
            os.environ.update(request.env)
            _name_process(WORKER_PROCESS_NAME)
            gc.enable()
            code = _run_worker(channel_fd)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            with contextlib.suppress(BaseException):
                traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(BaseException):
                    stream.flush()
            os._exit(code)


def _run_worker(channel_fd: int) -> int:
    from swarmd.worker.main import run_worker

    return run_worker(channel_fd)


def _redirect_output(log_fd: int) -> None:
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.close(null_fd)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)


def _name_process(name: bytes) -> None:
    with contextlib.suppress(OSError), open("/proc/self/comm", "wb") as comm:
        comm.write(name)


def _ignore_signal(signum: int, frame: object) -> None:
    del signum, frame


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _spawn_failure(request: SpawnRequest, exc: OSError) -> str:
    if exc.filename == request.log:
        return f"cannot open the log file {request.log}: {exc.strerror}"
    if exc.filename == request.cwd:
        reason = exc.strerror
        return f"cannot start a worker: working directory {request.cwd} is unusable ({reason})"
    return f"cannot fork a worker: {exc.strerror or exc}"


def start_ticks(pid: int) -> int:
    """When ``pid`` started, in clock ticks since boot: exact, and immune to clock changes."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        # The name (field 2) may hold spaces and parentheses: count from the last ")".
        fields = stat.read().rsplit(b")", 1)[1].split()
    return int(fields[19])  # field 22 of proc(5); the split starts at field 3


def preload(modules: tuple[str, ...] = PRELOADED_MODULES) -> None:
    """Import ``modules`` now, so that forked workers find them loaded."""
    for name in modules:
        importlib.import_module(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="swarmd.worker.forkserver")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    args = parser.parse_args(argv)
    arm_parent_death(args.parent)
    worker_handlers: dict[int, _Handler] = {}
    for signum in STOP_SIGNALS:
        # None: a handler installed outside Python, which cannot be put back from here.
        if (handler := signal.getsignal(signum)) is not None:
            worker_handlers[signum] = handler
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    # Collections leave freed holes in pages the children share; the zygote allocates
    # little, and what it does is frozen before each fork.
    gc.disable()
    began = time.monotonic()
    control = socket.socket(fileno=args.control_fd)
    control.setblocking(True)
    leave_out_httpx_command_line()
    preload()
    gc.freeze()
    zygote = Zygote(control, worker_handlers)
    try:
        zygote.announce_ready(time.monotonic() - began)
    except ConnectionError:
        return 0
    return zygote.serve()


if __name__ == "__main__":
    status = main()
    # Nothing is left to do: the interpreter's teardown (freeing every module it preloaded,
    # one by one) would keep the daemon's shutdown waiting ~6 ms longer.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
