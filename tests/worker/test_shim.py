"""The parent-death shim: when the daemon dies, even by SIGKILL, nothing it started survives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from swarmd.worker import shim
from tests.support.child_processes import (
    PROCESS_TIMEOUT,
    OrphanWatch,
    ReadyPipe,
    SessionLeaders,
    is_alive,
    poll_until,
)
from tests.support.shim_entry import ENTRY_POINT as SHIM_ENTRY

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux prctl")

STANDIN_DAEMON = Path(__file__).parent.parent / "support" / "standin_daemon.py"

PYTHON_WORKER = textwrap.dedent(
    """
    import os, subprocess, sys
    from swarmd.worker.shim import arm_parent_death
    arm_parent_death(int(sys.argv[1]))
    grandchild = subprocess.Popen(["sleep", "60"])
    os.write(int(sys.argv[2]), b"ready %d %d\\n" % (os.getpid(), grandchild.pid))
    grandchild.wait()
    """
)


def start_standin_daemon(
    leaders: SessionLeaders, log_dir: Path, pipe: ReadyPipe, worker_argv: list[str], workers: int
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(STANDIN_DAEMON), "--workers", str(workers)]
    argv += ["--pass-fd", str(pipe.write_fd), "--log", str(log_dir), "--", *worker_argv]
    return leaders.start(argv, pass_fds=(pipe.write_fd,))


def kill_and_reap(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait(timeout=PROCESS_TIMEOUT)


def test_python_workers_and_grandchildren_die_with_a_sigkilled_daemon(
    tmp_path: Path, ready_pipe: ReadyPipe, orphans: OrphanWatch, leaders: SessionLeaders
) -> None:
    worker = [sys.executable, "-c", PYTHON_WORKER, "{daemon_pid}", str(ready_pipe.write_fd)]
    daemon = start_standin_daemon(leaders, tmp_path, ready_pipe, worker, workers=3)
    reports = [ready_pipe.read_line().split() for _ in range(3)]
    started = [int(pid) for report in reports for pid in report[1:]]
    assert all(is_alive(pid) for pid in started)
    assert len(orphans.survivors()) == 1 + 3 * 2  # daemon; per worker: worker, sleep

    kill_and_reap(daemon)

    assert orphans.wait_for_none(timeout=2.0) == []


def test_a_command_under_the_shim_entry_point_dies_with_a_sigkilled_daemon(
    tmp_path: Path, ready_pipe: ReadyPipe, orphans: OrphanWatch, leaders: SessionLeaders
) -> None:
    fd = ready_pipe.write_fd
    command = f"sleep 60 & echo ready $$ $! >/dev/fd/{fd}; wait"
    shimmed = [sys.executable, SHIM_ENTRY, "{daemon_pid}", "--", "sh", "-c", command]
    daemon = start_standin_daemon(leaders, tmp_path, ready_pipe, shimmed, workers=2)
    for _ in range(2):
        assert ready_pipe.read_line().startswith("ready")
    assert len(orphans.survivors()) == 1 + 2 * 3  # daemon; per worker: shim, sh, sleep

    kill_and_reap(daemon)

    assert orphans.wait_for_none(timeout=2.0) == []


def test_worker_whose_parent_died_before_arming_kills_its_group_at_once() -> None:
    # The expected parent is not our parent: exactly what a worker sees when the daemon
    # died between fork and prctl, after which no death signal will ever come.
    code = "from swarmd.worker.shim import arm_parent_death; arm_parent_death(1); print('survived')"
    result = subprocess.run(
        [sys.executable, "-c", code],
        start_new_session=True,
        capture_output=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL
    assert b"survived" not in result.stdout


def test_arming_refuses_a_process_that_does_not_lead_its_group() -> None:
    code = (
        "from swarmd.worker.shim import arm_parent_death; import os; arm_parent_death(os.getppid())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=PROCESS_TIMEOUT, check=False
    )
    assert result.returncode == 1
    assert b"leads its own process group" in result.stderr


def shim_argv() -> list[str]:
    """The shim entry point, armed for the test process as the daemon."""
    return [sys.executable, SHIM_ENTRY, str(os.getpid()), "--"]


def run_shim(*argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*shim_argv(), *argv],
        start_new_session=True,
        capture_output=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )


def test_shim_exits_with_the_exit_code_of_its_command() -> None:
    assert run_shim("sh", "-c", "exit 3").returncode == 3


def test_shim_dies_of_the_signal_that_killed_its_command() -> None:
    assert run_shim("sh", "-c", "kill -TERM $$").returncode == -signal.SIGTERM


def test_shim_reports_a_missing_executable() -> None:
    result = run_shim("no-such-command-for-swarmd")
    assert result.returncode == 127
    assert b"cannot run 'no-such-command-for-swarmd'" in result.stderr


def test_shim_forwards_sigterm_sent_to_it_alone(
    ready_pipe: ReadyPipe, leaders: SessionLeaders
) -> None:
    fd = ready_pipe.write_fd
    shimmed = leaders.start(
        [*shim_argv(), "sh", "-c", f"echo ready >/dev/fd/{fd}; exec sleep 60"], pass_fds=(fd,)
    )
    assert ready_pipe.read_line() == "ready"
    # Sent by another process (not the shim's parent), to the shim's pid only.
    subprocess.run(["kill", "-TERM", str(shimmed.pid)], check=True, timeout=PROCESS_TIMEOUT)
    assert shimmed.wait(timeout=PROCESS_TIMEOUT) == -signal.SIGTERM


COUNT_SIGTERMS = textwrap.dedent(
    """
    import os, signal, sys
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    os.write(int(sys.argv[1]), b"ready\\n")
    signal.sigwaitinfo({signal.SIGTERM})
    second = signal.sigtimedwait({signal.SIGTERM}, 0.5)
    print("twice" if second else "once")
    """
)


def test_shim_does_not_repeat_a_signal_its_parent_sent_to_the_whole_group(
    ready_pipe: ReadyPipe, leaders: SessionLeaders
) -> None:
    fd = ready_pipe.write_fd
    shimmed = leaders.start(
        [*shim_argv(), sys.executable, "-c", COUNT_SIGTERMS, str(fd)],
        pass_fds=(fd,),
        stdout=subprocess.PIPE,
    )
    assert ready_pipe.read_line() == "ready"
    os.killpg(shimmed.pid, signal.SIGTERM)
    out, _ = shimmed.communicate(timeout=PROCESS_TIMEOUT)
    assert out.strip() == b"once"
    assert shimmed.returncode == 0


def test_shim_usage_error_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, SHIM_ENTRY, "not-a-pid"],
        capture_output=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )
    assert result.returncode == 2
    assert b"usage:" in result.stderr


def test_shim_imports_only_what_a_worker_can_afford() -> None:
    code = (
        "import sys; before = set(sys.modules); import swarmd.worker.shim;"
        "print(sorted(set(sys.modules) - before))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=PROCESS_TIMEOUT, check=True
    )
    imported = {name.strip("' ") for name in result.stdout.decode().strip("[]\n").split(",")}
    assert "psutil" not in imported
    assert "asyncio" not in imported
    assert {name for name in imported if name.startswith("swarmd")} == {
        "swarmd",
        "swarmd.errors",
        "swarmd.worker",
        "swarmd.worker.shim",
    }


def test_prctl_reports_a_refused_option() -> None:
    with pytest.raises(OSError):
        shim.prctl(-1, 0)


LEAVE_A_BACKGROUND_CHILD = """
import subprocess, sys
from swarmd.worker.shim import adopt_orphans, kill_rest_of_group
fd = int(sys.argv[1])
adopting = sys.argv[2] == "adopting" and adopt_orphans()
assert adopting == (sys.argv[2] == "adopting")
subprocess.run(["sh", "-c", f"sleep 300 & echo $! > /dev/fd/{fd}"], pass_fds=(fd,), check=True)
print(kill_rest_of_group(adopting=adopting), flush=True)
"""


@pytest.mark.parametrize("how", ["adopting", "reading /proc"])
def test_a_worker_leaves_no_process_of_its_group_behind_when_it_exits(
    how: str, ready_pipe: ReadyPipe, orphans: OrphanWatch, leaders: SessionLeaders
) -> None:
    fd = ready_pipe.write_fd
    worker = leaders.start(
        [sys.executable, "-c", LEAVE_A_BACKGROUND_CHILD, str(fd), how],
        pass_fds=(fd,),
        stdout=subprocess.PIPE,
    )
    background = int(ready_pipe.read_line())
    out, _ = worker.communicate(timeout=PROCESS_TIMEOUT)

    assert worker.returncode == 0
    assert out.strip() == b"1"  # the background sleep, found and killed
    assert orphans.wait_for_none(timeout=2.0) == []
    assert not is_alive(background)


LEAVE_A_TREE = """
import subprocess, sys
from swarmd.worker.shim import adopt_orphans, kill_rest_of_group
assert adopt_orphans()
fd = int(sys.argv[1])
script = (
    # a child that stays, its own background child, and a process that leaves the group
    f"sh -c 'sleep 300 & echo stays $! > /dev/fd/{fd}; wait' & echo stays $! > /dev/fd/{fd}; "
    f"setsid sleep 300 & echo leaves $! > /dev/fd/{fd}"
)
subprocess.run(["sh", "-c", script], pass_fds=(fd,), stdout=subprocess.DEVNULL, check=True)
for _ in range(3):
    sys.stdin.readline()
print(kill_rest_of_group(adopting=True), flush=True)
"""


def test_an_adopting_worker_finds_its_group_at_any_depth_and_only_its_group(
    ready_pipe: ReadyPipe, leaders: SessionLeaders
) -> None:
    fd = ready_pipe.write_fd
    worker = leaders.start(
        [sys.executable, "-c", LEAVE_A_TREE, str(fd)],
        pass_fds=(fd,),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    lines = [ready_pipe.read_line().split() for _ in range(3)]
    stays = [int(pid) for label, pid in lines if label == "stays"]
    (escaped,) = [int(pid) for label, pid in lines if label == "leaves"]
    try:
        assert poll_until(lambda: os.getpgid(escaped) != worker.pid, timeout=PROCESS_TIMEOUT)
        out, _ = worker.communicate(b"\n\n\n", timeout=PROCESS_TIMEOUT)
        assert worker.returncode == 0
        assert out.strip() == b"2"  # the waiting shell and its sleep, not the setsid one
        assert [pid for pid in stays if is_alive(pid)] == []
        assert is_alive(escaped)
    finally:
        os.kill(escaped, signal.SIGKILL)


def test_sweeping_a_group_this_process_does_not_lead_does_nothing() -> None:
    # A child that stays in the test's process group must never sweep that group.
    code = "from swarmd.worker.shim import kill_rest_of_group; print(kill_rest_of_group())"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=PROCESS_TIMEOUT, check=True
    )
    assert result.stdout.strip() == b"0"
