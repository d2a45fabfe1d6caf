"""The fork server: workers forked from a warm zygote behave as exec'd ones, and die as they do."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from structlog.testing import capture_logs

from swarmd.config import Settings, load_settings
from swarmd.daemon.serve import worker_spawner
from swarmd.errors import ConfigError, ProcessError
from swarmd.spawn.groups import SpawnedProcess, WorkerProcess
from swarmd.spawn.spawners import ExecSpawner, ForkedProcess, ForkServer
from swarmd.wire.channel import Channel, ChannelClosed
from swarmd.worker.forkserver import Zygote
from tests.support.child_processes import (
    PROCESS_TIMEOUT,
    OrphanWatch,
    SessionLeaders,
    is_alive,
    poll_until,
    poll_until_async,
)
from tests.support.standin_forkserver import check_job, command_job, spawn_worker

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux processes")

STANDIN_DAEMON = Path(__file__).parent.parent / "support" / "standin_forkserver.py"

SLEEP_WITH_A_GRANDCHILD = 'sleep 60 & echo "$$ $!" > ready.tmp && mv ready.tmp ready; wait'
"""A command that starts a grandchild and says so in ``ready`` (its pid and the sleep's)."""


def worker_env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], **extra}


@pytest.fixture
async def fork_server(tmp_path: Path) -> AsyncIterator[ForkServer]:
    # Only what the zygote needs: a worker must never see this environment, only its own.
    server = ForkServer(
        env=worker_env(ZYGOTE_ONLY="1"), cwd=tmp_path, log_path=tmp_path / "forkserver.log"
    )
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def result_of(channel: Channel) -> dict[str, Any]:
    """Read the worker's messages until its result."""
    async with asyncio.timeout(PROCESS_TIMEOUT):
        while (message := await channel.receive())["type"] != "result":
            pass
    return message


async def run_command(
    server: ForkServer, workspace: Path, argv: list[str], env: dict[str, str] | None = None
) -> tuple[WorkerProcess, dict[str, Any]]:
    """Fork a worker, have it run ``argv``, and wait for its result and its exit."""
    return await run_job(server, workspace, command_job(workspace, argv), env)


async def run_job(
    server: ForkServer, workspace: Path, job: dict[str, Any], env: dict[str, str] | None = None
) -> tuple[WorkerProcess, dict[str, Any]]:
    """Fork a worker, hand it ``job``, and wait for its result and its exit."""
    proc, channel = await spawn_worker(server, workspace, env or worker_env())
    try:
        await channel.send({"type": "job", "job": job})
        result = await result_of(channel)
        async with asyncio.timeout(PROCESS_TIMEOUT):
            await proc.wait()
    finally:
        await channel.close()
    return proc, result


async def wait_for_ready_file(workspace: Path) -> list[int]:
    ready = workspace / "ready"
    assert await poll_until_async(ready.exists, within=PROCESS_TIMEOUT)
    return [int(pid) for pid in ready.read_text().split()]


async def test_forked_worker_leads_its_own_session_and_group(
    tmp_path: Path, fork_server: ForkServer
) -> None:
    proc, channel = await spawn_worker(fork_server, tmp_path / "w", worker_env())
    try:
        assert isinstance(proc, ForkedProcess)
        assert os.getsid(proc.pid) == os.getpgid(proc.pid) == proc.pid == proc.pgid
        assert psutil.Process(proc.pid).ppid() == fork_server.pid
        assert proc.identity.create_time == psutil.Process(proc.pid).create_time()
    finally:
        proc.signal_group(signal.SIGKILL)
        await proc.wait()
        await channel.close()


def loaded_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


async def test_a_worker_that_calls_no_model_is_forked_before_the_model_stack_is_imported(
    tmp_path: Path,
) -> None:
    server = ForkServer(env=worker_env(), cwd=tmp_path, log_path=tmp_path / "forkserver.log")
    await server.start()
    workers = []
    try:
        # The first is asked for while the zygote warms up, and forked as soon as it is
        # ready; the second only once it has imported what calling a model takes. Of the
        # shared libraries, only that stack loads ``_datetime``: a worker's maps tell.
        workers.append(await spawn_worker(server, tmp_path / "plain", worker_env(), models=False))
        workers.append(await spawn_worker(server, tmp_path / "caller", worker_env(), models=True))
        (plain, _), (caller, _) = workers
        assert "/_datetime." not in loaded_libraries(plain.pid)
        assert "/_datetime." in loaded_libraries(caller.pid)
    finally:
        for proc, channel in workers:
            proc.signal_group(signal.SIGKILL)
            await proc.wait()
            await channel.close()
        await server.close()


def test_a_model_module_the_zygote_cannot_import_is_left_to_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "swarmd_later_a.py").write_text("MADE = []\ndef make():\n    MADE.append(1)\n")
    (tmp_path / "swarmd_later_b.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    later = ("swarmd_later_a:make", "swarmd_no_such_module", "swarmd_later_b")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        with ours, theirs:
            zygote = Zygote(ours, {}, later_modules=later)
            zygote.import_later(1)
            assert sys.modules["swarmd_later_a"].MADE == [1]  # imported, then called
            zygote.import_later(2)  # the failure is logged, and the rest is not tried
            zygote.import_later(1)
            assert "swarmd_later_b" not in sys.modules
        assert "swarmd_no_such_module" in capsys.readouterr().err
    finally:
        for name in ("swarmd_later_a", "swarmd_later_b"):
            sys.modules.pop(name, None)


async def test_forked_worker_gets_exactly_the_environment_given(
    tmp_path: Path, fork_server: ForkServer
) -> None:
    env = worker_env(ONLY_THIS="yes")
    # A verify check runs with its worker's whole environment (a command agent sees only a
    # minimal base of it: tests/agents/test_command.py), so it shows what the worker was given.
    workspace = tmp_path / "w"
    _, result = await run_job(fork_server, workspace, check_job(workspace, ["env"]), env)

    assert result["ok"], result
    printed = result["result"]["checks"][0]["output"].splitlines()
    seen = dict(line.split("=", 1) for line in printed)
    assert seen == env


async def test_forked_worker_output_is_appended_to_its_log(
    tmp_path: Path, fork_server: ForkServer
) -> None:
    log = tmp_path / "w.log"
    log.write_text("before\n")
    # A command's own stdout is part of its output (stdout.txt); the worker's stdout, which
    # the command reaches here through /proc, is the log, as its stderr is.
    script = "echo to stdout >> /proc/$PPID/fd/1; echo to stderr >&2"

    proc, result = await run_command(fork_server, tmp_path / "w", ["sh", "-c", script])

    assert result["ok"], result
    assert proc.returncode == 0
    assert log.read_text().splitlines() == ["before", "to stdout", "to stderr"]


async def test_forked_worker_log_is_created_private(
    tmp_path: Path, fork_server: ForkServer
) -> None:
    await run_command(fork_server, tmp_path / "w", ["true"])

    assert (tmp_path / "w.log").stat().st_mode & 0o777 == 0o600


async def test_forked_worker_exit_code_is_reported(tmp_path: Path, fork_server: ForkServer) -> None:
    closed, closed_channel = await spawn_worker(fork_server, tmp_path / "a", worker_env())
    other, other_channel = await spawn_worker(fork_server, tmp_path / "b", worker_env())
    try:
        # A worker whose channel closes before its job exits 3; the other worker must not
        # hold that channel open (the zygote hands each worker its own fd alone).
        await closed_channel.close()
        async with asyncio.timeout(PROCESS_TIMEOUT):
            assert await closed.wait() == 3
        assert closed.returncode == 3
        assert other.returncode is None
    finally:
        other.signal_group(signal.SIGKILL)
        await other.wait()
        await other_channel.close()


async def test_forked_worker_death_by_signal_is_reported_negative(
    tmp_path: Path, fork_server: ForkServer
) -> None:
    proc, channel = await spawn_worker(fork_server, tmp_path / "w", worker_env())
    try:
        assert proc.signal_group(signal.SIGTERM)
        async with asyncio.timeout(PROCESS_TIMEOUT):
            assert await proc.wait() == -signal.SIGTERM
    finally:
        await channel.close()


async def test_zygote_death_takes_its_workers_and_their_children_with_it(
    tmp_path: Path, orphans: OrphanWatch, fork_server: ForkServer
) -> None:
    command = ["sh", "-c", SLEEP_WITH_A_GRANDCHILD]
    started = []
    for name in ("a", "b"):
        proc, channel = await spawn_worker(fork_server, tmp_path / name, worker_env())
        await channel.send({"type": "job", "job": command_job(tmp_path / name, command)})
        started.append((proc, channel, await wait_for_ready_file(tmp_path / name)))
    zygote = fork_server.pid
    assert zygote is not None

    os.kill(zygote, signal.SIGKILL)

    for proc, channel, _ in started:
        async with asyncio.timeout(PROCESS_TIMEOUT):
            assert await proc.wait() == -signal.SIGKILL
        assert proc.lost_with_spawner
        with pytest.raises(ChannelClosed):
            async with asyncio.timeout(PROCESS_TIMEOUT):
                while True:
                    await channel.receive()
        await channel.close()
    descendants = [proc.pid for proc, _, _ in started] + [p for *_, pids in started for p in pids]
    assert await poll_until_async(lambda: not any(map(is_alive, descendants)), within=2.0)


async def test_zygote_outlives_a_sigterm_meant_for_the_whole_service(
    tmp_path: Path, fork_server: ForkServer
) -> None:
    await run_command(fork_server, tmp_path / "before", ["true"])  # it is warm and serving
    zygote = fork_server.pid
    assert zygote is not None

    os.kill(zygote, signal.SIGTERM)
    proc, result = await run_command(fork_server, tmp_path / "after", ["true"])

    assert result["ok"], result
    assert isinstance(proc, ForkedProcess)
    assert fork_server.pid == zygote


async def test_spawn_after_the_zygote_died_starts_a_new_one(
    tmp_path: Path, fork_server: ForkServer
) -> None:
    await run_command(fork_server, tmp_path / "before", ["true"])  # it is warm and serving
    first = fork_server.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert await poll_until_async(lambda: fork_server.pid is None, within=PROCESS_TIMEOUT)

    with capture_logs() as logs:
        proc, result = await run_command(fork_server, tmp_path / "after", ["true"])

    assert result["ok"], result
    assert isinstance(proc, ForkedProcess)
    assert fork_server.pid not in (None, first)
    assert "forkserver_restarted" in [e["event"] for e in logs]


async def test_spawn_in_an_unusable_directory_is_refused(
    tmp_path: Path, fork_server: ForkServer
) -> None:
    with pytest.raises(ProcessError, match=r"working directory .*missing is unusable"):
        await spawn_worker(fork_server, tmp_path / "missing", worker_env(), mkdir=False)
    assert fork_server.pid is not None  # the zygote serves on


async def test_spawn_execs_when_the_fork_server_cannot_start(tmp_path: Path) -> None:
    server = ForkServer(
        env=worker_env(),
        cwd=tmp_path,
        log_path=tmp_path / "forkserver.log",
        python=str(tmp_path / "no-such-python"),
        fallback=ExecSpawner(sys.executable),
    )
    with capture_logs() as logs:
        await server.start()
        proc, result = await run_command(server, tmp_path / "w", ["true"])
    await server.close()

    assert result["ok"], result
    assert isinstance(proc, SpawnedProcess)
    assert "forkserver_start_failed" in [e["event"] for e in logs]


async def test_spawn_execs_when_the_zygote_dies_before_it_is_ready(tmp_path: Path) -> None:
    false = shutil.which("false")
    assert false is not None
    server = ForkServer(
        env=worker_env(),
        cwd=tmp_path,
        log_path=tmp_path / "forkserver.log",
        python=false,  # starts, and exits at once
        fallback=ExecSpawner(sys.executable),
    )
    await server.start()
    with capture_logs() as logs:
        first, _ = await run_command(server, tmp_path / "a", ["true"])
        second, _ = await run_command(server, tmp_path / "b", ["true"])
    await server.close()

    assert isinstance(first, SpawnedProcess)
    assert isinstance(second, SpawnedProcess)
    # It is not restarted at every spawn: the second one execs without trying.
    assert [e["event"] for e in logs if e["event"].startswith("forkserver_")] == [
        "forkserver_start_failed"
    ]


async def test_close_stops_the_zygote_and_awaits_it(
    tmp_path: Path, fork_server: ForkServer
) -> None:
    zygote = fork_server.pid
    assert zygote is not None

    await fork_server.close()

    assert fork_server.pid is None
    assert not is_alive(zygote)


def test_sigkilled_daemon_takes_zygote_workers_and_grandchildren_within_two_seconds(
    tmp_path: Path, orphans: OrphanWatch, leaders: SessionLeaders
) -> None:
    argv = [sys.executable, str(STANDIN_DAEMON), "--workers", "3", "--home", str(tmp_path)]
    daemon = leaders.start([*argv, "--", "sh", "-c", SLEEP_WITH_A_GRANDCHILD])
    ready = [tmp_path / f"w{n}" / "ready" for n in range(3)]
    assert poll_until(lambda: all(path.exists() for path in ready), timeout=PROCESS_TIMEOUT)
    # The daemon, the zygote, and per worker: the worker, its sh, and the sleep.
    assert len(orphans.survivors()) == 2 + 3 * 3

    daemon.kill()
    daemon.wait(timeout=PROCESS_TIMEOUT)

    assert orphans.wait_for_none(timeout=2.0) == []


def test_worker_start_setting_chooses_how_workers_start(tmp_path: Path) -> None:
    assert Settings.model_fields["worker_start"].default == "fork"
    fork_settings = load_settings(home=tmp_path, worker_start="fork")
    assert isinstance(worker_spawner(fork_settings, {}), ForkServer)
    exec_settings = load_settings(home=tmp_path, worker_start="exec")
    assert isinstance(worker_spawner(exec_settings, {}), ExecSpawner)
    with pytest.raises(ConfigError, match="SWARMD_WORKER_START"):
        load_settings(home=tmp_path, worker_start="spawn")
