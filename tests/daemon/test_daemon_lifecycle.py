"""The supervisor end to end: real daemons, real workers, real signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import psutil

from swarmd.models import ExitReason, TaskSpec, TaskState, TicketSpec, TicketState
from swarmd.store import Store
from tests.support.cli import (
    Daemon,
    attempts_of,
    python_command,
    swarmd,
    tasks_of,
    ticket_of,
    wait_until,
    write_ticket,
)
from tests.support.subreaper import make_child_subreaper

RECORD_SPAN = """
import sys, time
log, name = sys.argv[1], sys.argv[2]
with open(log, "a") as f:
    f.write(f"start {name} {time.time()}\\n")
time.sleep(0.3)
with open(log, "a") as f:
    f.write(f"end {name} {time.time()}\\n")
"""

SPAWN_GRANDCHILD_ONCE = """
import pathlib, subprocess, sys
marks, name = pathlib.Path(sys.argv[1]), sys.argv[2]
if (marks / name).exists():
    sys.exit(0)
(marks / name).write_text("started")
child = subprocess.Popen(["sleep", "60"])
(marks / (name + ".pid")).write_text(str(child.pid))
child.wait()
"""

IGNORE_SIGTERM = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(60)
"""


def submitted_id(result: subprocess.CompletedProcess[str]) -> int:
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1])


def overlaps(spans: dict[str, tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in spans.values()] + [(e, -1) for _, e in spans.values()])
    running = peak = 0
    for _, delta in points:
        running += delta
        peak = max(peak, running)
    return peak


def test_dag_of_command_tasks_runs_in_dependency_order_within_the_limit(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    spans_log = tmp_path / "spans.log"
    command = [*python_command(RECORD_SPAN), str(spans_log), "{task}"]
    fan = [f"b{i}" for i in range(5)]
    tasks = [{"name": "a", "agent": "command", "command": command}]
    tasks += [{"name": n, "agent": "command", "command": command, "needs": ["a"]} for n in fan]
    tasks += [{"name": "c", "agent": "command", "command": command, "needs": fan}]
    tasks += [{"name": "d", "agent": "command", "command": command, "needs": ["c"]}]
    path = write_ticket(tmp_path, {"title": "dag", "tasks": tasks})

    result = swarmd(
        "run-ticket", str(path), "--wait", env={**swarmd_env, "SWARMD_MAX_CONCURRENT_WORKERS": "3"}
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "delivery" in result.stdout
    spans: dict[str, list[float]] = {}
    for line in spans_log.read_text().splitlines():
        kind, name, at = line.split()
        spans.setdefault(name, [0.0, 0.0])[0 if kind == "start" else 1] = float(at)
    assert set(spans) == {"a", *fan, "c", "d"}
    needs = {**{n: ["a"] for n in fan}, "c": fan, "d": ["c"]}
    for name, required in needs.items():
        assert all(spans[name][0] >= spans[r][1] for r in required), name
    assert overlaps({k: (v[0], v[1]) for k, v in spans.items()}) <= 3


def test_sigkill_of_the_daemon_leaves_no_descendant_and_a_restart_finishes_everything(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, daemon: Daemon
) -> None:
    make_child_subreaper()
    try:
        kill_daemon_and_restart(tmp_path, swarmd_env, home, daemon)
    finally:
        make_child_subreaper(enabled=False)


def kill_daemon_and_restart(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, daemon: Daemon
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    command = [*python_command(SPAWN_GRANDCHILD_ONCE), str(marks), "{task}"]
    tasks = [{"name": f"t{i}", "agent": "command", "command": command} for i in range(5)]
    daemon.start()
    ticket_id = submitted_id(
        swarmd(
            "submit", str(write_ticket(tmp_path, {"title": "k", "tasks": tasks})), env=swarmd_env
        )
    )
    wait_until(lambda: len(list(marks.glob("*.pid"))) == 5)
    descendants = psutil.Process(daemon.pid).children(recursive=True)
    assert len(descendants) >= 10  # five workers, five command agents, five grandchildren

    daemon.signal(signal.SIGKILL)
    daemon.wait()

    def all_gone() -> bool:
        alive = []
        for proc in descendants:
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
                else:
                    os.waitpid(proc.pid, os.WNOHANG)
            except (psutil.NoSuchProcess, ChildProcessError):
                continue
        return not alive

    wait_until(all_gone, timeout=2.0)

    restarted = Daemon(swarmd_env, home).start()
    try:
        wait_until(lambda: ticket_of(home, ticket_id).state.is_terminal, timeout=60)
    finally:
        restarted.stop()
    assert ticket_of(home, ticket_id).state is TicketState.SUCCEEDED
    for task in tasks_of(home, ticket_id):
        attempts = attempts_of(home, task.id)
        reasons = [a.exit_reason for a in attempts]
        assert reasons.count(ExitReason.OK) == 1, (task.name, reasons)
        assert reasons[0] is ExitReason.INTERRUPTED
        assert task.failures == 0


def start_sleepers(tmp_path: Path, env: dict[str, str], command: list[str], count: int = 3) -> int:
    tasks = [{"name": f"s{i}", "agent": "command", "command": command} for i in range(count)]
    return submitted_id(
        swarmd("submit", str(write_ticket(tmp_path, {"title": "s", "tasks": tasks})), env=env)
    )


def running_pids(home: Path) -> list[int]:
    async def go() -> list[int]:
        async with await Store.open(home / "swarmd.db") as store:
            return [a.pid for _, a in await store.running_attempts() if a.pid]

    return asyncio.run(go())


def test_sigterm_with_cooperative_workers_exits_at_once_and_requeues(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, daemon: Daemon
) -> None:
    daemon.start()
    ticket_id = start_sleepers(tmp_path, swarmd_env, ["sleep", "30"])
    wait_until(lambda: len(running_pids(home)) == 3)
    time.sleep(0.5)  # let the workers reach their command (not synchronisation of the result)

    began = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    elapsed = time.monotonic() - began

    assert elapsed < 2.0, f"a cooperative shutdown took {elapsed:.2f} s"
    for task in tasks_of(home, ticket_id):
        assert task.state is TaskState.READY
        assert task.failures == 0
        assert attempts_of(home, task.id)[-1].exit_reason is ExitReason.INTERRUPTED


def test_sigterm_with_stubborn_workers_kills_their_groups_after_the_grace(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, daemon: Daemon
) -> None:
    daemon.start()
    ticket_id = start_sleepers(tmp_path, swarmd_env, python_command(IGNORE_SIGTERM))
    wait_until(lambda: len(running_pids(home)) == 3)
    time.sleep(0.5)
    groups = list(running_pids(home))

    began = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    elapsed = time.monotonic() - began

    grace = float(swarmd_env["SWARMD_SHUTDOWN_GRACE_SECONDS"])
    assert grace - 0.5 <= elapsed <= grace + 1.0, elapsed
    # Zombies still answer killpg(pgid, 0) until their reaper gets to them: count the living.
    survivors = [
        p
        for p in psutil.process_iter(["status"])
        if p.info["status"] != psutil.STATUS_ZOMBIE and _pgid(p.pid) in groups
    ]
    assert survivors == []
    assert {t.state for t in tasks_of(home, ticket_id)} == {TaskState.READY}


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_a_second_sigterm_skips_the_grace(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, daemon: Daemon
) -> None:
    daemon.start()
    start_sleepers(tmp_path, swarmd_env, python_command(IGNORE_SIGTERM), count=2)
    wait_until(lambda: len(running_pids(home)) == 2)
    time.sleep(0.5)

    began = time.monotonic()
    daemon.signal(signal.SIGTERM)
    time.sleep(0.3)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert time.monotonic() - began < 2.5


def test_memory_and_time_limits_kill_with_their_reasons_and_the_daemon_carries_on(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    hog = python_command("import time; x = bytearray(400 * 2**20); time.sleep(30)")
    ticket = {
        "title": "limits",
        "tasks": [
            {"name": "hog", "agent": "command", "command": hog, "max_attempts": 1},
            {
                "name": "slow",
                "agent": "command",
                "command": ["sleep", "30"],
                "timeout_seconds": 1,
                "max_attempts": 2,
            },
            {"name": "fine", "agent": "echo", "prompt": "still here"},
        ],
    }
    env = {**swarmd_env, "SWARMD_WORKER_MEMORY_LIMIT_MB": "200"}

    result = swarmd("run-ticket", str(write_ticket(tmp_path, ticket)), "--wait", env=env)

    assert result.returncode == 1, result.stdout + result.stderr
    tasks = {t.name: t for t in tasks_of(home, 1)}
    assert tasks["fine"].state is TaskState.SUCCEEDED
    assert tasks["hog"].state is TaskState.DEAD
    assert [a.exit_reason for a in attempts_of(home, tasks["hog"].id)] == [ExitReason.MEMORY]
    assert tasks["slow"].state is TaskState.DEAD
    assert [a.exit_reason for a in attempts_of(home, tasks["slow"].id)] == [ExitReason.TIMEOUT] * 2


def test_sd_notify_ready_watchdog_and_stopping_before_any_worker_is_signalled(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    sock_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    received: list[tuple[float, str]] = []

    def collect() -> None:
        listener.settimeout(0.2)
        while True:
            try:
                data = listener.recv(4096)
            except TimeoutError:
                if stop_listening.is_set():
                    return  # and nothing was left queued
                continue
            received.append((time.time(), data.decode()))

    stop_listening = threading.Event()
    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    record_env_then_wait = (
        "import json, os, signal, socket, sys, time\n"
        "json.dump(dict(os.environ), open('env.json', 'w'))\n"
        "def on_term(*_):\n"
        "    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "    s.sendto(b'WORKER_TERM', sys.argv[1])\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, on_term)\n"
        "time.sleep(60)\n"
    )
    env = {**swarmd_env, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "4000000"}
    daemon = Daemon(env, home).start()
    try:
        ticket = {
            "title": "n",
            "tasks": [
                {
                    "name": "w",
                    "agent": "command",
                    "command": [*python_command(record_env_then_wait), str(sock_path)],
                }
            ],
        }
        swarmd("submit", str(write_ticket(tmp_path, ticket)), env=env)
        workspace = home / "work" / "1" / "w"
        wait_until((workspace / "env.json").exists)
        wait_until(lambda: any("WATCHDOG=1" in m for _, m in received), timeout=10)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.stop()
        stop_listening.set()
        thread.join()
        listener.close()

    messages = [m for _, m in received]
    assert "READY=1" in messages[0]
    # One datagram socket delivers in the order of sending: the daemon's STOPPING=1 must
    # come before the worker's own report that it got SIGTERM. (Timestamps taken by the
    # listening thread could not show that order: it may read both in one wake-up.)
    stopping_at = next(i for i, m in enumerate(messages) if "STOPPING=1" in m)
    assert stopping_at <= messages.index("WORKER_TERM")
    worker_env = json.loads((workspace / "env.json").read_text())
    assert "NOTIFY_SOCKET" not in worker_env
    assert not [k for k in worker_env if k.startswith("WATCHDOG_")]


def test_startup_sweep_never_kills_a_process_that_reused_a_recorded_pid(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, daemon: Daemon
) -> None:
    bystander = subprocess.Popen(["sleep", "60"])
    try:

        async def plant() -> None:
            async with await Store.open(home / "swarmd.db") as store:
                spec = TicketSpec(title="p", agent="echo", tasks=(TaskSpec(name="t", prompt="hi"),))
                await store.submit_ticket(spec)
                claimed = await store.claim_ready_task()
                assert claimed is not None
                real = psutil.Process(bystander.pid).create_time()
                await store.record_spawn(
                    claimed.attempt.token, pid=bystander.pid, pid_create_time=real - 1000
                )

        asyncio.run(plant())
        daemon.start()
        wait_until(lambda: ticket_of(home, 1).state is TicketState.SUCCEEDED)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
