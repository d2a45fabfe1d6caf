"""Making the test process a child subreaper, so orphans can be counted (Linux only)."""

from __future__ import annotations

import sys

from swarmd.errors import ProcessError
from swarmd.worker import shim


def make_child_subreaper(*, enabled: bool = True) -> None:
    """Make this process adopt its orphaned descendants instead of init (Linux only).

    A subreaper must reap what it adopts. Inside the asyncio daemon that means by pid, for
    pids known to be adopted — never ``waitpid(-1)``, which steals the exit status of
    children asyncio is still waiting for.
    """
    if not sys.platform.startswith("linux"):
        raise ProcessError("a child subreaper needs Linux")
    try:
        shim.prctl(shim.PR_SET_CHILD_SUBREAPER, 1 if enabled else 0)
    except OSError as exc:
        raise ProcessError(f"cannot become a child subreaper: {exc.strerror}") from exc
