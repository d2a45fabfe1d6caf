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
``ctypes`` (and the always-loaded ``sys``) from the standard library, and swarmd's
dependency-free error module.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

from swarmd.errors import ProcessError

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

PARENT_DEATH_SIGNAL = signal.SIGUSR2
"""The signal the kernel sends a worker when the daemon dies. Workers must not reuse it."""

FORWARDED_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})

_SI_USER_CODES_MAX = 0
"""``si_code <= 0`` means a process sent the signal (SI_USER, SI_QUEUE, SI_TKILL)."""


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


def _kill_own_group(signum: int | None = None, frame: object = None) -> None:
    del signum, frame
    os.killpg(0, signal.SIGKILL)


def run_as_parent(expected_parent_pid: int, argv: list[str]) -> int:
    """Arm the parent-death signal, run ``argv`` in this process group, return its status.

    The status is the child's exit code, or ``128 + N`` when signal N killed it and
    re-raising the signal on ourselves did not end us.
    """
    arm_parent_death(expected_parent_pid)
    waited = {signal.SIGCHLD, *FORWARDED_SIGNALS}
    # Block before spawning so the child's exit (SIGCHLD) cannot slip past sigwaitinfo.
    # Blocked signals are queued even when their default action is to ignore them.
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        # posix_spawnp reports a missing executable as an exception here, in the parent,
        # and the child starts with a clean signal mask (a blocked mask survives exec).
        child = os.posix_spawnp(
            argv[0],
            argv,
            os.environ,
            setsigmask=previous_mask,
            setsigdef=(PARENT_DEATH_SIGNAL, *FORWARDED_SIGNALS),
        )
    except OSError as exc:
        os.write(2, f"swarmd.worker.shim: cannot run {argv[0]!r}: {exc.strerror}\n".encode())
        return 127
    while True:
        info = signal.sigwaitinfo(waited)
        if info.si_signo == signal.SIGCHLD:
            pid, status = os.waitpid(child, os.WNOHANG)
            if pid == child:
                return _exit_like(status)
        elif _needs_forwarding(info):
            os.killpg(0, info.si_signo)


def _needs_forwarding(info: signal.struct_siginfo) -> bool:
    # Our group already got the signal when a terminal sent it (a kernel si_code) or when
    # our parent did: swarmd's supervisor only ever signals whole groups. Forwarding those
    # would deliver it twice, and a second SIGINT interrupts a Python child's clean-up.
    # Our own killpg also comes back to us (blocked, so queued): skip that copy too.
    if info.si_code > _SI_USER_CODES_MAX:
        return False
    return info.si_pid not in (os.getpid(), os.getppid())


def _exit_like(status: int) -> int:
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        # Die of the same signal, so our parent sees "signal N" as it would have without us.
        try:
            signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
        except (OSError, ValueError):  # SIGKILL and SIGSTOP cannot be set; killing works
            pass
        os.kill(os.getpid(), signum)
        return 128 + signum
    return os.waitstatus_to_exitcode(status)


def main(args: list[str]) -> int:
    """``python -m swarmd.worker.shim PARENT_PID -- ARGV...``."""
    if len(args) < 3 or args[1] != "--" or not args[0].isdigit():
        os.write(2, b"usage: python -m swarmd.worker.shim PARENT_PID -- ARGV...\n")
        return 2
    try:
        return run_as_parent(int(args[0]), args[2:])
    except ProcessError as exc:
        os.write(2, f"swarmd.worker.shim: {exc}\n".encode())
        return 126


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
