"""The fork server's rehearsal: a command job served by the worker's own code in the zygote
leaves the process as it found it, so every worker forked after it starts as before.

Each case runs in a fresh interpreter: the rehearsal changes (and must put back) process-wide
state, the signal dispositions, the signal mask and the wake-up fd, which this test process
must not share.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from swarmd.worker.forkserver import MODEL_MODULES, REHEARSAL, Zygote
from tests.support.cli import Daemon, swarmd, write_ticket

PROBE = textwrap.dedent(
    """
    import dataclasses, json, os, signal, sys, tempfile, threading
    from pathlib import Path

    from swarmd.worker import rehearsal

    if sys.argv[1] == "stop-signal":
        # The command signals the rehearsing process: the stop meant for the whole service.
        job = rehearsal.rehearsal_job
        rehearsal.rehearsal_job = lambda scratch: dataclasses.replace(
            job(scratch), command=("sh", "-c", "kill -TERM $PPID")
        )
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as the zygote has it
    exits = []
    signal.signal(signal.SIGCHLD, lambda *_: exits.append(1))
    wakeup_read, wakeup_write = os.pipe()
    os.set_blocking(wakeup_write, False)
    signal.set_wakeup_fd(wakeup_write)
    fds = sorted(os.listdir("/proc/self/fd"))
    scratch = set(Path(tempfile.gettempdir()).glob("swarmd-rehearsal-*"))
    ok = rehearsal.rehearse()
    print(json.dumps({
        "ok": ok,
        "sigterm_ignored": signal.getsignal(signal.SIGTERM) is signal.SIG_IGN,
        "wakeup_fd_kept": signal.set_wakeup_fd(-1) == wakeup_write,
        "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "child_exit_delivered": bool(exits),
        "threads": threading.active_count(),
        "fds_kept": sorted(os.listdir("/proc/self/fd")) == fds,
        "scratch_left": sorted(map(str, set(Path(tempfile.gettempdir()).glob(
            "swarmd-rehearsal-*")) - scratch)),
    }))
    """
)


def probe(case: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, case], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_a_rehearsal_serves_its_job_and_puts_the_process_back_as_it_was() -> None:
    found = probe("plain")
    assert found == {
        "ok": True,
        "sigterm_ignored": True,
        "wakeup_fd_kept": True,
        "blocked": [],
        # The command's exit, while the signals were blocked, is delivered once they are not.
        "child_exit_delivered": True,
        "threads": 1,
        "fds_kept": True,
        "scratch_left": [],
    }


def test_a_stop_signal_during_the_rehearsal_meets_the_zygotes_own_disposition() -> None:
    found = probe("stop-signal")  # the process would have died if SIGTERM met SIG_DFL
    assert found["sigterm_ignored"] is True
    assert found["blocked"] == []
    assert found["scratch_left"] == []


def test_a_worker_that_calls_models_waits_for_their_stack_not_for_the_rehearsal() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs:
        zygote = Zygote(ours, {}, later_modules=("json", REHEARSAL))
        zygote.import_models()
        assert zygote.later == (REHEARSAL,)  # left for a moment when no request waits
    assert Zygote(ours, {}).later == (*MODEL_MODULES, REHEARSAL)


def test_workers_forked_after_the_rehearsal_have_no_signal_blocked_or_ignored_by_it(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    probe_ticket = {
        "title": "signals",
        "tasks": [
            {
                "name": "status",
                "agent": "command",
                # Not through sh: a shell clears the signal mask it was given.
                "command": ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"],
            }
        ],
    }
    daemon = Daemon(swarmd_env, home).start()
    try:
        # The zygote rehearses once it has been idle long enough to import the model stack
        # a module at a time (0.1 s of quiet each) and then some.
        zygote_log = home / "logs" / "forkserver.log"
        time.sleep(0.1 * len(MODEL_MODULES) + 2.0)
        ticket = write_ticket(tmp_path, probe_ticket)
        result = swarmd("submit", str(ticket), "--wait", env=swarmd_env)
    finally:
        daemon.stop()
    assert result.returncode == 0, result.stderr
    assert "rehearsal failed" not in (zygote_log.read_text() if zygote_log.exists() else "")
    status = dict(
        line.split(":\t") for line in (home / "work/1/status/stdout.txt").read_text().splitlines()
    )
    assert int(status["SigBlk"], 16) == 0
    sigterm = 1 << (15 - 1)
    assert not int(status["SigIgn"], 16) & sigterm  # the zygote's SIG_IGN stays its own
