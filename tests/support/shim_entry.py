"""A shim entry point for tests: ``python shim_entry.py DAEMON_PID -- ARGV...``.

It arms the parent-death signal (``swarmd.worker.shim``), runs ARGV in its own process
group, stays as its parent, and exits with its status: a stand-in worker that is not Python.
"""

from __future__ import annotations

import os
import signal
import sys

from swarmd.errors import ProcessError
from swarmd.worker.shim import PARENT_DEATH_SIGNAL, arm_parent_death

FORWARDED_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})

_SI_USER_CODES_MAX = 0
"""``si_code <= 0`` means a process sent the signal (SI_USER, SI_QUEUE, SI_TKILL)."""

ENTRY_POINT = os.path.abspath(__file__)


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
