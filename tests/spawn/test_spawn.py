"""Spawning a worker: its own session and group, exactly the environment given, a log file."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from swarmd.errors import ProcessError
from swarmd.spawn.groups import SpawnedProcess, identify, spawn_process_group
from tests.support.child_processes import ReadyPipe

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux processes")


async def spawn(tmp_path: Path, *argv: str, **kwargs: object) -> SpawnedProcess:
    options: dict[str, object] = {
        "cwd": tmp_path,
        "env": {"PATH": os.environ["PATH"]},
        "stdout_path": tmp_path / "worker.log",
    }
    options.update(kwargs)
    return await spawn_process_group(argv, **options)  # type: ignore[arg-type]


async def test_spawned_process_leads_its_own_session_and_group(tmp_path: Path) -> None:
    code = "import os; print(os.getsid(0), os.getpgrp(), os.getpid())"
    proc = await spawn(tmp_path, sys.executable, "-c", code)
    assert await proc.wait() == 0
    sid, pgid, pid = map(int, (tmp_path / "worker.log").read_text().split())
    assert sid == pgid == pid == proc.pid == proc.pgid
    assert pgid != os.getpgrp()


async def test_spawned_process_gets_exactly_the_environment_given(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "ONLY_THIS": "yes"}
    proc = await spawn(tmp_path, "env", env=env)
    assert await proc.wait() == 0
    printed = (tmp_path / "worker.log").read_text().splitlines()
    assert sorted(printed) == ["ONLY_THIS=yes", f"PATH={os.environ['PATH']}"]


async def test_spawned_process_runs_in_the_given_directory(tmp_path: Path) -> None:
    workspace = tmp_path / "work"
    workspace.mkdir()
    proc = await spawn(tmp_path, "pwd", cwd=workspace)
    assert await proc.wait() == 0
    assert (tmp_path / "worker.log").read_text().strip() == str(workspace)


async def test_stdout_and_stderr_are_appended_to_the_log_file(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text("earlier attempt\n")
    proc = await spawn(tmp_path, "sh", "-c", "echo out; echo err >&2; echo out again")
    assert await proc.wait() == 0
    assert log.read_text() == "earlier attempt\nout\nerr\nout again\n"


async def test_log_file_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    proc = await spawn(tmp_path, "true")
    await proc.wait()
    assert stat.S_IMODE((tmp_path / "worker.log").stat().st_mode) == 0o600


async def test_stdin_is_empty(tmp_path: Path) -> None:
    proc = await spawn(tmp_path, "wc", "-c")
    assert await proc.wait() == 0
    assert (tmp_path / "worker.log").read_text().strip() == "0"


async def test_only_passed_descriptors_reach_the_child(
    tmp_path: Path, ready_pipe: ReadyPipe
) -> None:
    stray_read, stray_write = os.pipe()
    os.set_inheritable(stray_write, True)
    try:
        code = (
            "import os, sys; fds = sorted(int(fd) for fd in os.listdir('/proc/self/fd'));"
            "os.write(int(sys.argv[1]), (' '.join(map(str, fds)) + '\\n').encode())"
        )
        proc = await spawn(
            tmp_path,
            sys.executable,
            "-c",
            code,
            str(ready_pipe.write_fd),
            pass_fds=(ready_pipe.write_fd,),
        )
        line = await ready_pipe.read_line_async()
        await proc.wait()
    finally:
        os.close(stray_read)
        os.close(stray_write)
    open_fds = {int(fd) for fd in line.split()}
    assert ready_pipe.write_fd in open_fds
    assert stray_write not in open_fds


async def test_identity_is_taken_at_spawn(tmp_path: Path, ready_pipe: ReadyPipe) -> None:
    fd = ready_pipe.write_fd
    proc = await spawn(
        tmp_path, "sh", "-c", f"echo up >/dev/fd/{fd}; exec sleep 60", pass_fds=(fd,)
    )
    await ready_pipe.read_line_async()
    assert identify(proc.pid) == proc.identity
    proc.signal_group(9)
    await proc.wait()


async def test_missing_executable_raises_process_error(tmp_path: Path) -> None:
    with pytest.raises(ProcessError, match="'no-such-agent-binary': executable not found"):
        await spawn(tmp_path, "no-such-agent-binary")


async def test_non_executable_file_raises_process_error(tmp_path: Path) -> None:
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(ProcessError, match="permission denied"):
        await spawn(tmp_path, str(script))


async def test_missing_working_directory_raises_process_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    with pytest.raises(ProcessError, match=f"working directory {missing} is unusable"):
        await spawn(tmp_path, "true", cwd=missing)


async def test_unwritable_log_raises_process_error(tmp_path: Path) -> None:
    with pytest.raises(ProcessError, match="cannot open the log file"):
        await spawn(tmp_path, "true", stdout_path=tmp_path / "no-dir" / "worker.log")


async def test_empty_command_raises_process_error(tmp_path: Path) -> None:
    with pytest.raises(ProcessError, match="empty command"):
        await spawn(tmp_path)
