"""The parent-death shim: a worker's whole process group dies with the daemon.

Every worker process imports this module first and calls ``arm_parent_death(daemon_pid)``.
When the daemon dies — even by SIGKILL, when it can clean up nothing — the kernel sends the
worker SIGUSR2, and the worker SIGKILLs its own process group: itself, the command agent it
started, and that agent's children.

``python -m swarmd.worker.shim DAEMON_PID -- ARGV...`` does the same for a program that is not a
Python worker: it arms itself, runs ARGV in its own process group, stays as its parent, and
exits with its status.

Why a shim in the child rather than ``preexec_fn`` in the daemon:

* ``PR_SET_PDEATHSIG`` is tied to the *thread* that forked the child, not to the process:
  the signal fires when that thread exits, even while the daemon lives on. ``preexec_fn``
  runs in whichever thread called ``Popen``, so one spawn from a helper thread would leave
  a worker that dies when the thread retires.
* ``preexec_fn`` runs Python between ``fork()`` and ``exec()`` in a multithreaded parent —
  asyncio on 3.11 runs a waiter thread per child — where a lock held by another thread at
  fork time can deadlock the child. It also disables subprocess's ``vfork`` fast path.

Why a handler that kills the group rather than ``PDEATHSIG=SIGKILL``: SIGKILL would take
down only the worker; its children would be re-parented and live on as orphans. The death
signal is also cleared in every child the worker forks, so only the worker itself can act.

This module is on every worker's start-up path: it imports only ``os``, ``signal``,
``contextlib``, ``ctypes`` (and the built-in ``sys`` and ``time``) from the standard library,
and swarmd's dependency-free error module.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time

from swarmd.errors import ProcessError

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

PARENT_DEATH_SIGNAL = signal.SIGUSR2
"""The signal the kernel sends a worker when the daemon dies. Workers must not reuse it."""


def prctl(option: int, value: int) -> None:
    """Call Linux ``prctl(option, value)``; raise ``OSError`` when the kernel refuses."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def arm_parent_death(expected_parent_pid: int) -> None:
    """Kill this process's whole group when its parent, ``expected_parent_pid``, dies.

    The caller must lead its own process group (the daemon spawns workers with
    ``start_new_session=True``): the group is what gets killed. A no-op off Linux.
    """
    if not sys.platform.startswith("linux"):
        return
    if os.getpgrp() != os.getpid():
        # killpg(0) from a process that shares its parent's group would kill the parent's
        # group — possibly a user's shell pipeline. Refuse rather than risk that.
        raise ProcessError(
            "the parent-death shim needs a process that leads its own process group "
            "(start it with start_new_session=True)"
        )
    # The handler goes in before prctl so a death signal can never find the default action
    # (terminate this process alone, leaving its children behind).
    signal.signal(PARENT_DEATH_SIGNAL, _kill_own_group)
    try:
        prctl(PR_SET_PDEATHSIG, PARENT_DEATH_SIGNAL)
    except OSError as exc:
        raise ProcessError(f"cannot set the parent-death signal: {exc.strerror}") from exc
    # The parent may have died between our fork and the prctl above; the kernel sends
    # nothing in that case, because we were already re-parented. Our parent pid tells.
    if os.getppid() != expected_parent_pid:
        _kill_own_group()


def adopt_orphans() -> bool:
    """Make this process its descendants' reaper: an orphan among them (a command's
    ``sleep 300 &``) is re-parented to it rather than to init. Then every member of its
    group is among its descendants, and ``kill_rest_of_group(adopting=True)`` finds them by
    walking its children instead of reading every process of the host. An adopted orphan
    that exits while the command runs stays a zombie of this process until the sweep reaps
    it, at the attempt's end. Whether the kernel agreed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
    except OSError:
        return False
    return True


def kill_rest_of_group(*, adopting: bool = False, rounds: int = 3) -> int:
    """SIGKILL every other process of the group this process leads; how many were found.

    A worker calls it last, so that it never exits leaving a process of its group behind:
    a command's background child (``sleep 300 &``) outlives the command, is re-parented to
    init, and nothing else would kill it if the daemon died before sweeping the group.
    Members are found among this process's descendants when ``adopting`` (it called
    ``adopt_orphans``), else in ``/proc`` (no cheaper way lists a group); a member forking
    while we sweep is caught by the next round.
    """
    leader = os.getpid()
    if os.getpgrp() != leader:
        return 0  # never sweep a group we do not lead
    found: set[int] = set()
    for _ in range(rounds):
        members = [pid for pid in _live_group_members(leader, adopting) if pid != leader]
        if not members:
            break
        # A member killed in the previous round may not have died yet: counted once.
        found.update(members)
        for pid in members:
            with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                os.kill(pid, signal.SIGKILL)
    if adopting:
        _reap_adopted(found)
    return len(found)


def _reap_adopted(killed: set[int], *, timeout: float = 1.0) -> None:
    """Reap this process's exited children: the members just killed (given a moment to
    die) and the orphans it adopted that exited meanwhile, which would otherwise pass to
    init as zombies when it exits."""
    deadline = time.monotonic() + timeout
    waiting = set(killed)
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid:
            waiting.discard(pid)
            continue
        waiting = {pid for pid in waiting if _process_state(pid) is not None}
        if not waiting or time.monotonic() > deadline:
            return
        time.sleep(0.001)


def _live_group_members(pgid: int, adopting: bool) -> list[int]:
    if adopting:
        with contextlib.suppress(FileNotFoundError):  # a kernel without the children lists
            return _live_group_descendants(pgid)
    return _live_group_members_in_proc(pgid)


def _live_group_descendants(pgid: int) -> list[int]:
    """The members of group ``pgid`` among this process's descendants, from the kernel's
    lists of each thread's children: a few reads when the command left nothing behind."""
    members = []
    pending = _children_of(os.getpid(), missing_ok=False)
    while pending:
        pid = pending.pop()
        state = _process_state(pid)
        if state is None:
            continue  # it exited while we looked
        if state[0] != b"Z" and state[1] == pgid:
            members.append(pid)
        pending.extend(_children_of(pid, missing_ok=True))
    return members


def _children_of(pid: int, *, missing_ok: bool) -> list[int]:
    children: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        if missing_ok:
            return children  # it exited while we looked
        raise
    for tid in threads:
        try:
            listed = _read_small(f"/proc/{pid}/task/{tid}/children")
        except FileNotFoundError:
            if not missing_ok:
                raise
            continue
        children.extend(int(child) for child in listed.split())
    return children


def _process_state(pid: int) -> tuple[bytes, int] | None:
    """``pid``'s state letter and process group, or None if it is gone."""
    try:
        stat = _read_small(f"/proc/{pid}/stat")
    except OSError:
        return None
    # The name (field 2) may hold spaces and parentheses: count from the last ")".
    fields = stat.rsplit(b")", 1)[-1].split(None, 3)
    # fields[0] is the state (field 3 of proc(5)), fields[2] the process group (field 5).
    if len(fields) < 3:
        return None
    return fields[0], int(fields[2])


def _read_small(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _live_group_members_in_proc(pgid: int) -> list[int]:
    members = []
    # Raw reads: every process of the host is read, on every exit of a command's worker.
    for entry in os.listdir("/proc"):
        state = _process_state(int(entry)) if entry.isdigit() else None
        if state is not None and state[0] != b"Z" and state[1] == pgid:
            members.append(int(entry))
    return members


def _kill_own_group(signum: int | None = None, frame: object = None) -> None:
    del signum, frame
    os.killpg(0, signal.SIGKILL)
