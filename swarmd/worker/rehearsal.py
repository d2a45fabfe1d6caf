"""The fork server's rehearsal: one command job, ``true``, served by the worker's own code.

A forked worker copies every page of the fork server that it writes to. Python 3.11 writes
to more than its objects' reference counts: the first calls of a function quicken its
bytecode in place, a method looked up for the first time is written into the type cache,
and modules fill their caches on first use (the channel's codec, the archive's, asyncio's).
Paid in the fork server once, none of that is paid again by each worker: a worker of a
command task copies ~15% fewer pages and spends ~15% less CPU (STATUS.md, Benchmarks).

The rehearsal runs the job the daemon would send, in this process, on a scratch directory:
the channel over a socket pair (this side plays the daemon), the job's workspace, the
command, its archive, the result. It leaves nothing behind: the directory is removed, the
command reaped, the event loop closed, and the process's signal dispositions and wake-up
fd put back as they were (the event loop sets its own). It never raises: a rehearsal that
fails costs the workers their copies, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from swarmd.wire.agent import AgentDef, AgentKind
from swarmd.wire.channel import Channel
from swarmd.wire.job import Job
from swarmd.worker.main import serve

TOUCHED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
"""The dispositions an event loop may change, put back after the rehearsal."""


def rehearse() -> bool:
    """Serve one ``true`` job here; whether it succeeded.

    The signals whose dispositions the event loop may change are blocked meanwhile: one that
    arrives (a worker's exit, a stop) is delivered once they are put back, as it would have
    been.
    """
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, TOUCHED_SIGNALS)
    saved = {signum: signal.getsignal(signum) for signum in TOUCHED_SIGNALS}
    wakeup = signal.set_wakeup_fd(-1)
    try:
        with tempfile.TemporaryDirectory(prefix="swarmd-rehearsal-") as scratch:
            return asyncio.run(_rehearse(Path(scratch)))
    except Exception as exc:  # a rehearsal only ever saves work: it never stops the zygote
        print(f"the workers' rehearsal failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return False
    finally:
        for signum, handler in saved.items():
            if handler is not None:
                signal.signal(signum, handler)
        signal.set_wakeup_fd(wakeup, warn_on_full_buffer=False)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def rehearsal_job(scratch: Path) -> Job:
    workspace = scratch / "work"
    return Job(
        ticket_id=0,
        task_id=0,
        task="rehearsal",
        attempt=1,
        agent=AgentDef(name="command", kind=AgentKind.COMMAND),
        workspace=str(workspace),
        archive_path=str(scratch / "rehearsal.tar.gz"),
        deadline=time.time() + 60,
        command=("true",),
        heartbeat_seconds=60.0,
    )


async def _rehearse(scratch: Path) -> bool:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    daemon = await Channel.from_socket(ours)
    try:
        daemon.post({"type": "job", "job": rehearsal_job(scratch).to_dict()})
        await daemon.flush()
        worker = asyncio.create_task(serve(theirs.detach()))
        result: dict[str, object] = {}
        with contextlib.suppress(Exception):
            while (message := await daemon.receive()).get("type") != "result":
                pass
            result = message
        code, _ = await worker
        return code == 0 and bool(result.get("ok"))
    finally:
        await daemon.close()
