"""Spawn, signal and kill whole process groups, and tell processes apart across pid reuse.

Every worker runs as the leader of its own session and process group, so one ``killpg``
reaches the worker, the agent it started, and that agent's children. A pid alone never
identifies a process: pids are reused, so every identity here is a pid *and* the kernel's
start time of the process (``ProcessIdentity``).

The daemon never calls ``waitpid(-1)`` (nor any "reap every child" helper): asyncio's child
watcher waits for each child by pid, and a status reaped from under it is lost — the
watcher then reports exit code 255 for a worker that may have succeeded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

from swarmd.errors import ProcessError

CREATE_TIME_TOLERANCE = 0.005
"""Seconds. The kernel counts start times in clock ticks (usually 10 ms) and psutil converts
them the same way every time: half a tick absorbs float noise yet tells apart two processes
started one tick apart."""

SYSTEMD_VARIABLE_PREFIXES = (
    "NOTIFY_SOCKET",
    "WATCHDOG_",
    "LISTEN_",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "SYSTEMD_EXEC_PID",
    "MANAGERPID",
    "MEMORY_PRESSURE_",
)
"""Variables systemd gives the daemon. A worker holding ``NOTIFY_SOCKET`` could tell systemd
that the service is ready or stopping; one holding ``WATCHDOG_*`` could feed its watchdog."""

PROVIDER_SECRET_NAMES = frozenset({"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "MINIMAX_API_KEY"})
SECRET_NAME_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET")


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as the kernel knows it: its pid and its start time (seconds since the epoch)."""

    pid: int
    create_time: float


def identify(pid: int) -> ProcessIdentity | None:
    """The identity of the process ``pid`` now, or ``None`` when no such process exists."""
    if pid <= 0:  # 0 and negative numbers name groups to kill(), never one process
        return None
    try:
        return ProcessIdentity(pid, psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def is_same_process(identity: ProcessIdentity) -> bool:
    """Whether the very process recorded in ``identity`` is still running (not a zombie)."""
    try:
        process = psutil.Process(identity.pid)
        return (
            _same_start(process.create_time(), identity.create_time)
            and process.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.Error:
        return False


def process_handle(identity: ProcessIdentity) -> psutil.Process | None:
    """A psutil handle on the very process ``identity`` names, or ``None`` once it is gone."""
    try:
        handle = psutil.Process(identity.pid)
        if _same_start(handle.create_time(), identity.create_time):
            return handle
    except psutil.Error:
        pass
    return None


def _same_start(a: float, b: float) -> bool:
    # A start time derived from the wall clock moves if the clock is stepped; a mismatch
    # then reads as "not ours", which errs on the side of never touching a stranger.
    return abs(a - b) <= CREATE_TIME_TOLERANCE


def _holds_pid(identity: ProcessIdentity) -> bool:
    """Whether the recorded process still holds its pid, running or as a zombie."""
    current = identify(identity.pid)
    return current is not None and _same_start(current.create_time, identity.create_time)


class WorkerProcess(Protocol):
    """What the supervisor and the worker sessions use of a worker's process.

    Met by ``SpawnedProcess`` (exec'd by ``spawn_process_group``) and by
    ``swarmd.spawn.spawners.ForkedProcess`` (forked by the fork server): either way the process
    leads its own session and group, and ``pgid == pid``.
    """

    @property
    def pid(self) -> int: ...
    @property
    def pgid(self) -> int: ...
    @property
    def identity(self) -> ProcessIdentity: ...
    @property
    def returncode(self) -> int | None: ...
    @property
    def lost_with_spawner(self) -> bool:
        """True when the worker died because whatever started it (the fork server) died."""
        ...

    async def wait(self) -> int: ...
    def signal_group(self, sig: int) -> bool: ...
    def tree_rss_bytes(self) -> int: ...
    def tree_usage(self) -> tuple[int, float]: ...


class GroupLeader:
    """A process that leads its own session and group, known by its identity.

    Signals go to the whole group, guarded against a stranger that reused the number; the
    memory and CPU figures cover the leader and its descendants. Subclasses say how its exit
    is awaited (``returncode``, ``wait()``).
    """

    def __init__(
        self,
        identity: ProcessIdentity,
        handle: psutil.Process | None,
    ) -> None:
        self._handle = handle
        self._cpu_handles: dict[ProcessIdentity, psutil.Process] = {}
        self.pid = identity.pid
        # The leader of a new session leads its group too: pgid == sid == pid. Reading it
        # with getpgid() instead would race with a fast exit.
        self.pgid = identity.pid
        self.identity = identity
        self.lost_with_spawner = False

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the whole group; ``False`` when the group is gone.

        Works after the leader has exited, for as long as any member of the group remains.
        """
        if not self._group_may_be_ours():
            return False
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            return False
        except PermissionError as exc:
            # A member changed its credentials (a setuid helper): say so, don't pretend it died.
            raise ProcessError(
                f"cannot signal process group {self.pgid}: permission denied"
            ) from exc
        return True

    def _group_may_be_ours(self) -> bool:
        # The kernel never hands out a pid that is still in use as a process group id, so
        # while any member of our group lives, the number stays ours. The danger is only
        # a group that emptied and a stranger that got the number and made its own group:
        # that stranger would then be alive at our pid with another start time.
        current = identify(self.pid)
        return current is None or _same_start(current.create_time, self.identity.create_time)

    def tree_rss_bytes(self) -> int:
        """Resident memory of the leader and all its descendants, summed (0 once it is gone).

        Pages shared between processes count once per process: an upper bound, which is the
        safe side for a memory limit. Descendants whose parent exited were re-parented out
        of the tree and are not counted.
        """
        return _tree_rss(self._tree())

    def tree_usage(self) -> tuple[int, float]:
        """Resident memory and CPU use of the tree, from a single walk.

        CPU is in percent of one CPU since the previous call (0.0 at the first).
        """
        tree = self._tree()
        return _tree_rss(tree), self._tree_cpu_percent(tree)

    def _tree_cpu_percent(self, tree: list[psutil.Process]) -> float:
        seen: dict[ProcessIdentity, psutil.Process] = {}
        total = 0.0
        for process in tree:
            try:
                key = ProcessIdentity(process.pid, process.create_time())
                # cpu_percent measures since the previous call on the *same* object, so the
                # objects are kept across calls, keyed by identity.
                kept = self._cpu_handles.get(key, process)
                total += kept.cpu_percent(interval=None)
            except psutil.Error:
                continue
            seen[key] = kept
        self._cpu_handles = seen
        return total

    def _tree(self) -> list[psutil.Process]:
        handle = self._handle
        if handle is None or not is_same_process(self.identity):
            return []
        try:
            return [handle, *handle.children(recursive=True)]
        except psutil.Error:
            return []


class SpawnedProcess(GroupLeader):
    """A process started by ``spawn_process_group``: the leader of its own process group.

    It keeps the asyncio ``Process`` (to await the exit) and the ``psutil.Process`` made at
    spawn: psutil remembers the start time, so a later check can tell our process from a
    stranger that was given the same pid after ours was reaped.
    """

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        handle: psutil.Process | None,
        argv: Sequence[str],
    ) -> None:
        # A handle of None means the child exited (and was reaped) before we could read its
        # start time; 0.0 is a start time no live process has, so the identity matches none.
        identity = ProcessIdentity(process.pid, handle.create_time() if handle is not None else 0.0)
        super().__init__(identity, handle)
        self.argv = tuple(argv)
        self._process = process

    def __repr__(self) -> str:
        return f"<SpawnedProcess pid={self.pid} returncode={self.returncode} argv={self.argv!r}>"

    @property
    def returncode(self) -> int | None:
        """The exit status once reaped: ``N`` for an exit code, ``-N`` for signal N."""
        return self._process.returncode

    async def wait(self) -> int:
        """Wait for the group leader to exit and return its ``returncode``."""
        return await self._process.wait()


def _tree_rss(tree: list[psutil.Process]) -> int:
    return sum(_rss_or_zero(process) for process in tree)


def _rss_or_zero(process: psutil.Process) -> int:
    # A process may exit between the listing and this read: it then uses no memory.
    try:
        return int(process.memory_info().rss)
    except psutil.Error:
        return 0


async def spawn_process_group(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdout_path: Path,
    pass_fds: Sequence[int] = (),
) -> SpawnedProcess:
    """Start ``argv`` as the leader of a new session, with stdout and stderr appended to a file.

    Only ``env`` is passed on (nothing is inherited), stdin is ``/dev/null``, and no file
    descriptor but 0-2 and ``pass_fds`` reaches the child. Call it from the thread that runs
    the event loop: it must outlive the child (see ``swarmd.worker.shim``).
    """
    if not argv:
        raise ProcessError("cannot start a process from an empty command")
    log_fd = _open_log(stdout_path)
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            pass_fds=tuple(pass_fds),
        )
    except OSError as exc:
        raise ProcessError(_spawn_failure(argv[0], cwd, exc)) from exc
    finally:
        os.close(log_fd)  # the child has its own copy
    return SpawnedProcess(process, _handle_for_child(process.pid), argv)


def _open_log(path: Path) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ProcessError(f"cannot open the log file {path}: {exc.strerror}") from exc


def _spawn_failure(executable: str, cwd: Path, exc: OSError) -> str:
    if exc.filename is not None and Path(os.fsdecode(exc.filename)) == Path(cwd):
        return f"cannot start {executable!r}: working directory {cwd} is unusable ({exc.strerror})"
    if isinstance(exc, FileNotFoundError):
        return f"cannot start {executable!r}: executable not found"
    if isinstance(exc, PermissionError):
        return f"cannot start {executable!r}: permission denied (is it executable?)"
    return f"cannot start {executable!r}: {exc.strerror or exc}"


def _handle_for_child(pid: int) -> psutil.Process | None:
    # asyncio's watcher may already have reaped a child that exited at once, and in theory
    # its pid may even belong to someone else by now: a handle is only taken while the pid
    # still names a process whose parent is us.
    try:
        handle = psutil.Process(pid)
        if handle.ppid() == os.getpid():
            return handle
    except psutil.Error:
        pass
    return None


async def terminate_group(
    proc: WorkerProcess, *, grace: float, skip_grace: asyncio.Event | None = None
) -> int:
    """SIGTERM the group, wait up to ``grace`` seconds, SIGKILL what is left; return the status.

    The wait ends early when the leader exits or ``skip_grace`` is set. Members still in the
    group once the leader is gone are SIGKILLed: the leader owns its children's shutdown, and
    a worker that exits leaving children has leaked them. Calling it on a process that has
    already exited only sweeps such leftovers. If the caller is cancelled, the group is
    SIGKILLed before the cancellation propagates (``wait()`` then reaps the leader).
    """
    try:
        if proc.returncode is None:
            proc.signal_group(signal.SIGTERM)
            await _wait_for_exit(proc, grace, skip_grace)
        # Also the sweep: with the leader gone, killpg still reaches leftover members,
        # and reports ProcessLookupError (False) when there are none.
        proc.signal_group(signal.SIGKILL)
        return await proc.wait()
    except asyncio.CancelledError:
        proc.signal_group(signal.SIGKILL)
        raise


async def _wait_for_exit(
    proc: WorkerProcess, grace: float, skip_grace: asyncio.Event | None
) -> None:
    waiters = [asyncio.create_task(proc.wait(), name=f"wait-for-exit-{proc.pid}")]
    if skip_grace is not None:
        waiters.append(asyncio.create_task(skip_grace.wait(), name=f"skip-grace-{proc.pid}"))
    try:
        await asyncio.wait(waiters, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


def kill_stale_group(identity: ProcessIdentity) -> bool:
    """SIGKILL what is left of the group and session a dead daemon's worker led.

    ``True`` when anything was killed. The worker led its own session, so its group and
    session ids are its pid. Its survivors are found by those ids and their start times,
    never by the pid alone, and even when the leader itself is gone: a command's background
    child outlives a worker that exited while the daemon was dead.

    The kernel never hands out a pid that still names a live group or session, so while
    any survivor remains, no stranger can hold the worker's pid; a process holding it with
    another start time means the group emptied and the number was reused: nothing is ours.
    """
    if identity.pid <= 1 or identity.pid in (os.getpid(), os.getpgrp(), os.getsid(0)):
        return False  # a corrupt record must never take down init or the daemon itself
    current = identify(identity.pid)
    if current is not None and not _same_start(current.create_time, identity.create_time):
        return False
    killed = False
    for survivor in _survivors(identity):
        try:
            os.kill(survivor, signal.SIGKILL)
        except ProcessLookupError:
            continue
        except PermissionError as exc:
            raise ProcessError(
                f"cannot kill process {survivor} of the stale group {identity.pid}: "
                "permission denied"
            ) from exc
        killed = True
    return killed


def _survivors(identity: ProcessIdentity) -> list[int]:
    """Processes in the group or session ``identity`` led, started no earlier than it."""
    earliest = identity.create_time - CREATE_TIME_TOLERANCE
    found = []
    for process in psutil.process_iter(["create_time"]):
        try:
            in_group = os.getpgid(process.pid) == identity.pid
            in_session = os.getsid(process.pid) == identity.pid
        except OSError:
            continue  # it exited while we looked
        started = process.info["create_time"]
        if (in_group or in_session) and started is not None and started >= earliest:
            found.append(process.pid)
    return found


def scrub_environment(
    env: Mapping[str, str],
    *,
    drop_prefixes: tuple[str, ...] = SYSTEMD_VARIABLE_PREFIXES,
    drop_names: Collection[str] = (),
    keep_names: Collection[str] = (),
) -> dict[str, str]:
    """A copy of ``env`` fit for a worker.

    Always drops names starting with ``drop_prefixes`` (systemd's variables) and
    ``drop_names``. Drops provider secrets — the known API keys and any name ending in
    ``_API_KEY``, ``_TOKEN`` or ``_SECRET`` — unless listed in ``keep_names``.
    """
    drop = frozenset(drop_names)
    keep = frozenset(keep_names)
    return {
        name: value
        for name, value in env.items()
        if not name.startswith(drop_prefixes)
        and name not in drop
        and (name in keep or not _looks_secret(name))
    }


def _looks_secret(name: str) -> bool:
    upper = name.upper()
    return upper in PROVIDER_SECRET_NAMES or upper.endswith(SECRET_NAME_SUFFIXES)


def describe_exit(returncode: int) -> str:
    """``"exit code 3"`` or ``"signal 9 (SIGKILL)"``, from an asyncio-style return code."""
    if returncode >= 0:
        return f"exit code {returncode}"
    number = -returncode
    try:
        return f"signal {number} ({signal.Signals(number).name})"
    except ValueError:
        return f"signal {number}"
