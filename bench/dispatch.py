"""Dispatch speed: a real ``swarmd run`` against ``xargs -P``, and what an idle daemon costs.

    python -P bench/dispatch.py [--tasks 200] [--concurrency 10] [--latency-samples 40]
                                [--idle-seconds 30] [--worker-start fork|exec]
                                [--user-tasks 120] [--rounds 5]

In one run, against one daemon on a temporary home:

* the user's view: whole commands timed from outside, as a person at a shell times them, a
  ticket of ``--user-tasks`` ``sleep 0.2`` command tasks at ``--concurrency``; in each of
  ``--rounds`` rounds, one after the other: ``xargs -P`` running the same sleeps (the
  baseline), ``swarmd submit FILE --wait`` against the warm daemon, ``swarmd run-ticket FILE
  --wait`` on a new home with no daemon (cold: it starts its own supervisor and fork server),
  and ``swarmd submit FILE`` alone (its ticket then waited for untimed), whose CPU is the
  command's start-up and submission without the waiting. Each figure is the median with its
  range over the rounds; ratios are of medians measured in the same rounds. The CPU of a
  command is its process's (and its children's) ``getrusage``. Swarmd's own time per attempt
  is an attempt's wall time in the database (claimed -> closed) less the 0.2 s its command
  sleeps. Targets: warm at most 1.25x xargs, cold at most 1.35x, the waiting CLI's CPU at
  most 0.15 s, swarmd's time per attempt at most 15 ms.

* throughput: one ticket of ``--tasks`` independent ``sleep 0.2`` command tasks at
  ``--concurrency`` workers, from the ticket's ``created_at`` to its ``finished_at`` (both
  written by the database), against ``xargs -P`` running the same ``sleep 0.2`` commands.
  Target: swarmd at most 1.25x the time of xargs.
* submit-to-start latency on an idle daemon: single-task tickets submitted one at a time,
  each waited for. Measured to the claim (the attempt's ``started_at``), to the worker's
  process creation (its ``create_time``, the target's measure: p50 at most 100 ms) and to the
  moment the task's own command runs (which adds the worker's start-up).
* the idle daemon's CPU (``cpu_times`` delta) and RSS over ``--idle-seconds``;
* one worker's RSS and USS while its command runs, and the fork server's (a forked worker
  shares the fork server's pages: its RSS counts them, its USS does not).

Workers start as ``--worker-start`` says (``SWARMD_WORKER_START``; the default is ``fork``).

The spawn gate is switched off (``SWARMD_MIN_FREE_MEMORY_MB=0``, ``SWARMD_MAX_LOAD=1000``,
``SWARMD_SPAWN_SETTLE_SECONDS=0``) so that only dispatch is measured, not the host's load,
and ``PYTHONDONTWRITEBYTECODE`` is dropped from the daemon's environment so that workers
start from cached bytecode, as an installed package does. The CPU the daemon and its
workers spend per task is reported beside the times: on a small host it is what bounds the
throughput. Prints a table and writes ``bench/results/dispatch.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil

from swarmd import __version__
from swarmd.cli.progress import follow_ticket
from swarmd.doorbell import ring
from swarmd.home import HomeLayout
from swarmd.models import Attempt, TaskSpec, TicketSpec
from swarmd.store import Store

TARGET_RATIO = 1.25
TARGET_P50_MS = 100.0
TARGET_WARM_RATIO = 1.25
TARGET_COLD_RATIO = 1.35
TARGET_WAIT_CPU_S = 0.15
TARGET_ATTEMPT_MS = 15.0
SLEEP_SECONDS = "0.2"
GATE_OFF = {
    "SWARMD_MIN_FREE_MEMORY_MB": "0",
    "SWARMD_MAX_LOAD": "1000",
    "SWARMD_SPAWN_SETTLE_SECONDS": "0",
}
T = TypeVar("T")
PROVIDER_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "MINIMAX_API_KEY", "NOTIFY_SOCKET")


@dataclass(frozen=True)
class Latency:
    """One single-task ticket: seconds from its submission to each milestone."""

    claimed: float
    spawned: float
    command_started: float


class BenchDaemon:
    """``swarmd run`` as a child process, with its stderr kept in a file."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.db_path = home / "swarmd.db"
        self.env = env
        self.stderr_path = home / "daemon.stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> psutil.Process:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "swarmd", "run"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.proc = proc
        poll_until(lambda: proc.poll() is not None or self.ready())
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited: {self.stderr_path.read_text()}")
        return psutil.Process(proc.pid)

    def is_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        log = self.home / "logs" / "swarmd.jsonl"
        return log.exists() and '"supervisor_ready"' in log.read_text()

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def poll_until(condition: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Call ``condition`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {timeout:g} s waiting for the daemon")
        time.sleep(0.02)
    return value


async def submit(db_path: Path, spec: TicketSpec) -> int:
    """Queue ``spec`` as ``swarmd submit`` does: the transaction, then the daemon's doorbell."""
    async with await Store.open(db_path) as store:
        ticket_id = (await store.submit_ticket(spec)).ticket_id
    ring(HomeLayout(db_path.parent).doorbell)
    return ticket_id


async def finished_ticket_attempts(
    daemon: BenchDaemon, ticket_id: int
) -> tuple[float, list[Attempt]]:
    """Wait for the ticket to finish; its wall time (database timestamps) and its attempts."""
    db_path = daemon.db_path
    died = asyncio.Event()

    async def watch_daemon() -> None:
        # The daemon is not a child of this event loop: only polling sees it die.
        while daemon.is_alive():  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        died.set()

    watcher = asyncio.create_task(watch_daemon(), name="watch-daemon")
    try:
        ticket = await follow_ticket(db_path, ticket_id, interval=0.02, stop=died)
    finally:
        watcher.cancel()
    if died.is_set() and not ticket.state.is_terminal:
        tail = daemon.stderr_path.read_text().splitlines()[-5:]
        raise SystemExit("the daemon died:\n" + "\n".join(tail))
    if ticket.state.value != "succeeded":
        raise SystemExit(f"ticket {ticket_id} ended {ticket.state.value}")
    assert ticket.finished_at is not None
    async with await Store.open(db_path) as store:
        attempts = [
            a for t in await store.list_tasks(ticket_id) for a in await store.list_attempts(t.id)
        ]
    return ticket.finished_at - ticket.created_at, attempts


def command_ticket(title: str, count: int, command: Sequence[str]) -> TicketSpec:
    return TicketSpec(
        title=title,
        agent="command",
        tasks=tuple(TaskSpec(name=f"t{i:03d}", command=tuple(command)) for i in range(count)),
    )


def peak_concurrency(attempts: Sequence[Attempt]) -> int:
    edges = sorted(
        [(a.started_at, 1) for a in attempts] + [(a.ended_at or a.started_at, -1) for a in attempts]
    )
    running = peak = 0
    for _, delta in edges:
        running += delta
        peak = max(peak, running)
    return peak


def time_swarmd(daemon: BenchDaemon, process: psutil.Process, tasks: int) -> dict[str, Any]:
    spec = command_ticket("throughput", tasks, ["sleep", SLEEP_SECONDS])

    async def run() -> tuple[float, list[Attempt]]:
        ticket_id = await submit(daemon.db_path, spec)
        return await finished_ticket_attempts(daemon, ticket_id)

    before, workers_before = process.cpu_times(), worker_cpu_seconds(process)
    seconds, attempts = asyncio.run(run())
    after, workers_after = process.cpu_times(), worker_cpu_seconds(process)
    durations = [(a.ended_at or a.started_at) - a.started_at for a in attempts]
    daemon_cpu = (after.user - before.user) + (after.system - before.system)
    worker_cpu = workers_after - workers_before
    return {
        "seconds": seconds,
        "attempts": len(attempts),
        "peak_concurrency": peak_concurrency(attempts),
        "attempt_mean_seconds": statistics.mean(durations),
        "attempt_p99_seconds": quantile(durations, 0.99),
        "daemon_cpu_ms_per_task": 1000 * daemon_cpu / len(attempts),
        "worker_cpu_ms_per_task": 1000 * worker_cpu / len(attempts),
    }


def fork_servers(daemon: psutil.Process) -> list[psutil.Process]:
    servers = []
    for child in daemon.children():
        try:
            if "swarmd.worker.forkserver" in child.cmdline():
                servers.append(child)
        except psutil.Error:
            continue
    return servers


def worker_cpu_seconds(daemon: psutil.Process) -> float:
    """CPU used so far by the daemon's workers, and by the fork server that forks them.

    An exec'd worker is the daemon's child: the daemon reaps it, and its CPU (with its
    command's, which it reaps) lands in the daemon's children_* times. A forked worker is
    the fork server's child: its CPU lands in the fork server's children_* times.
    """
    times = daemon.cpu_times()
    total = times.children_user + times.children_system
    for server in fork_servers(daemon):
        try:
            own = server.cpu_times()
        except psutil.Error:
            continue
        total += own.user + own.system + own.children_user + own.children_system
    return total


def time_xargs(tasks: int, concurrency: int) -> dict[str, float]:
    stdin = (SLEEP_SECONDS + "\n") * tasks
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        ["xargs", "-P", str(concurrency), "-n", "1", "sleep"],
        input=stdin.encode(),
        check=True,
    )
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": seconds, "cpu_ms_per_task": 1000 * cpu / tasks}


# -- the user's view: whole commands, timed from outside --------------------------------------


@dataclass(frozen=True)
class CommandRun:
    """One whole command: its wall time and its CPU (its process and its children)."""

    seconds: float
    cpu_seconds: float
    stdout: str


def run_command(
    argv: Sequence[str], *, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> CommandRun:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        argv,
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} ... exited {done.returncode}:\n{done.stderr!r}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return CommandRun(seconds, cpu, done.stdout.decode())


def write_sleep_ticket(path: Path, tasks: int) -> Path:
    lines = ['title = "user view"', 'agent = "command"']
    for i in range(tasks):
        lines += ["[[tasks]]", f'name = "t{i:03d}"', f'command = ["sleep", "{SLEEP_SECONDS}"]']
    path.write_text("\n".join(lines) + "\n")
    return path


def attempt_overheads_ms(db_path: Path, ticket_id: int) -> list[float]:
    """Each attempt's wall time in the database, less what its command sleeps, in ms."""

    async def read() -> list[Attempt]:
        async with await Store.open(db_path) as store:
            return [
                a
                for t in await store.list_tasks(ticket_id)
                for a in await store.list_attempts(t.id)
            ]

    sleep = float(SLEEP_SECONDS)
    return [
        1000 * ((a.ended_at or a.started_at) - a.started_at - sleep) for a in asyncio.run(read())
    ]


def spread(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def measure_user_view(
    daemon: BenchDaemon, scratch: Path, *, tasks: int, concurrency: int, rounds: int
) -> dict[str, Any]:
    """The rounds of xargs, warm ``submit --wait``, cold ``run-ticket --wait`` and a bare
    ``submit``, one after the other in each round, so that they share the host's noise."""
    ticket = write_sleep_ticket(scratch / "sleeps.toml", tasks)
    swarmd = [sys.executable, "-m", "swarmd"]
    xargs = ["xargs", "-P", str(concurrency), "-n", "1", "sleep"]
    figures: dict[str, list[float]] = {}

    def note(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    for number in range(rounds):
        print(f"  round {number + 1} of {rounds} ...", flush=True)
        load = os.getloadavg()[0]
        baseline = run_command(xargs, stdin=((SLEEP_SECONDS + "\n") * tasks).encode())
        warm = run_command([*swarmd, "submit", str(ticket), "--wait"], env=daemon.env)
        warm_id = int(warm.stdout.split()[0])
        cold_home = scratch / f"cold-{number}"
        cold_env = {**daemon.env, "SWARMD_HOME": str(cold_home)}
        cold = run_command([*swarmd, "run-ticket", str(ticket), "--wait"], env=cold_env)
        bare = run_command([*swarmd, "submit", str(ticket)], env=daemon.env)
        asyncio.run(finished_ticket_attempts(daemon, int(bare.stdout.split()[0])))
        note("load_1m", load)
        note("xargs_s", baseline.seconds)
        note("warm_s", warm.seconds)
        note("cold_s", cold.seconds)
        note("warm_ratio", warm.seconds / baseline.seconds)
        note("cold_ratio", cold.seconds / baseline.seconds)
        note("warm_cli_cpu_s", warm.cpu_seconds)
        note("submit_alone_cpu_s", bare.cpu_seconds)
        note("waiting_cpu_s", warm.cpu_seconds - bare.cpu_seconds)
        note("cold_cpu_s", cold.cpu_seconds)
        warm_attempts = attempt_overheads_ms(daemon.db_path, warm_id)
        cold_attempts = attempt_overheads_ms(cold_home / "swarmd.db", 1)
        note("warm_attempt_overhead_ms", statistics.mean(warm_attempts))
        note("cold_attempt_overhead_ms", statistics.mean(cold_attempts))
        shutil.rmtree(cold_home, ignore_errors=True)
    return {name: spread(values) for name, values in figures.items()}


def create_time_offset() -> float:
    """How far psutil's ``create_time`` runs ahead of ``time.time()`` on this host.

    psutil adds a process's start (in clock ticks since boot) to the boot time, which
    ``/proc/stat`` gives in whole seconds: its timestamps can be off by up to a second
    against the wall clock. Timing processes we start ourselves measures the offset.
    """
    offsets = []
    for _ in range(7):
        before = time.time()
        proc = subprocess.Popen(["sleep", "0.05"])
        after = time.time()
        offsets.append(psutil.Process(proc.pid).create_time() - (before + after) / 2)
        proc.wait()
    return statistics.median(offsets)


def measure_latencies(daemon: BenchDaemon, samples: int, clock_offset: float) -> list[Latency]:
    """Single-task tickets, one at a time, each waited for, on an otherwise idle daemon."""
    db_path = daemon.db_path
    layout = HomeLayout(daemon.home)
    mark = ["sh", "-c", "date +%s.%N > started_at"]

    async def one() -> Latency:
        ticket_id = await submit(db_path, command_ticket("latency", 1, mark))
        async with await Store.open(db_path) as store:
            created = (await store.get_ticket(ticket_id)).created_at
        _, [attempt] = await finished_ticket_attempts(daemon, ticket_id)
        assert attempt.pid_create_time is not None
        started = float((layout.workspace(ticket_id, "t000") / "started_at").read_text())
        return Latency(
            claimed=attempt.started_at - created,
            spawned=attempt.pid_create_time - clock_offset - created,
            command_started=started - created,
        )

    rng = random.Random(7)
    results = []
    for _ in range(samples):
        results.append(asyncio.run(one()))
        # Let the daemon finish the ticket's delivery archive, so each submission meets a
        # daemon with nothing to do; the random part keeps the submissions from locking
        # into one phase of the daemon's new-work poll, which would bias every sample.
        time.sleep(0.1 + rng.uniform(0, 0.1))
    return results


def measure_idle(daemon: psutil.Process, seconds: float) -> dict[str, float]:
    before = daemon.cpu_times()
    rss_samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rss_samples.append(daemon.memory_info().rss)
        time.sleep(1.0)
    after = daemon.cpu_times()
    cpu = (after.user - before.user) + (after.system - before.system)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "cpu_percent": 100 * cpu / seconds,
        "rss_bytes": rss_samples[-1],
        "rss_max_bytes": max(rss_samples),
        "uss_bytes": daemon.memory_full_info().uss,
    }


def measure_worker_rss(daemon: BenchDaemon, process: psutil.Process) -> dict[str, int]:
    """Start a worker whose command sleeps, and sample it once its command is running."""
    db_path = daemon.db_path
    ticket_id = asyncio.run(submit(db_path, command_ticket("rss", 1, ["sleep", "5"])))

    async def running_pid() -> int | None:
        async with await Store.open(db_path) as store:
            for task, attempt in await store.running_attempts():
                if task.ticket_id == ticket_id and attempt.pid is not None:
                    return attempt.pid
        return None

    worker = psutil.Process(poll_until(lambda: asyncio.run(running_pid())))
    poll_until(lambda: bool(worker.children()))
    time.sleep(0.5)  # let the worker settle after starting its command
    child = worker.children()[0]
    sample = {
        "worker_rss_bytes": worker.memory_info().rss,
        "worker_uss_bytes": worker.memory_full_info().uss,
        "command_rss_bytes": child.memory_info().rss,
    }
    for server in fork_servers(process):
        sample["forkserver_rss_bytes"] = server.memory_info().rss
        sample["forkserver_uss_bytes"] = server.memory_full_info().uss
    asyncio.run(finished_ticket_attempts(daemon, ticket_id))
    return sample


def startup_seconds(argv: Sequence[str], *, env: dict[str, str], runs: int = 5) -> float:
    """Median wall time of a short command, for the worker's start-up share."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def milliseconds(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(1000 * quantile(values, 0.50), 1),
        "p99_ms": round(1000 * quantile(values, 0.99), 1),
        "max_ms": round(1000 * max(values), 1),
    }


def bench_env(home: Path, concurrency: int, worker_start: str) -> dict[str, str]:
    # Without bytecode caching every worker would compile the modules that have no .pyc
    # yet (about 14 ms of CPU each here); an installed package always has them.
    dropped = (*PROVIDER_VARIABLES, "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("SWARMD_")}
    env.update(GATE_OFF, SWARMD_HOME=str(home), SWARMD_MAX_CONCURRENT_WORKERS=str(concurrency))
    env["SWARMD_WORKER_START"] = worker_start
    return env


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement, against one daemon on a temporary home; raw numbers."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="swarmd-bench-") as scratch:
        home = Path(scratch) / "home"
        daemon = BenchDaemon(home, bench_env(home, args.concurrency, args.worker_start))
        process = daemon.start()
        try:
            print(f"latency: {args.latency_samples} single-task tickets ...", flush=True)
            offset = create_time_offset()
            measure_latencies(daemon, 2, offset)  # warm the page cache for the worker's imports
            latencies = measure_latencies(daemon, args.latency_samples, offset)
            print(
                f"the user's view: {args.rounds} rounds of {args.user_tasks} x sleep "
                f"{SLEEP_SECONDS} (xargs, submit --wait, run-ticket --wait, submit) ...",
                flush=True,
            )
            user_view = measure_user_view(
                daemon,
                Path(scratch),
                tasks=args.user_tasks,
                concurrency=args.concurrency,
                rounds=args.rounds,
            )
            print(f"throughput: {args.tasks} x sleep {SLEEP_SECONDS} ...", flush=True)
            xargs_run = time_xargs(args.tasks, args.concurrency)
            swarmd_run = time_swarmd(daemon, process, args.tasks)
            print("worker rss ...", flush=True)
            worker = measure_worker_rss(daemon, process)
            print(f"idle daemon: {args.idle_seconds:g} s ...", flush=True)
            idle = measure_idle(process, args.idle_seconds)
        finally:
            exit_code = daemon.stop()
        tracebacks = daemon.stderr_path.read_text().count("Traceback")
    return {
        "user_view": user_view,
        "swarmd": swarmd_run,
        "xargs": xargs_run,
        "create_time_offset": offset,
        "latencies": latencies,
        "worker": worker,
        "idle": idle,
        "exit_code": exit_code,
        "tracebacks": tracebacks,
        "load": (load_before, os.getloadavg()[0]),
        "python_startup": startup_seconds([sys.executable, "-c", "pass"], env=daemon.env),
        "worker_startup": startup_seconds(
            [sys.executable, "-m", "swarmd.worker", "--help"], env=daemon.env
        ),
    }


def summarise(args: argparse.Namespace, raw: dict[str, Any]) -> dict[str, Any]:
    """The figures written to ``dispatch.json``."""
    swarmd_run, xargs_run, latencies = raw["swarmd"], raw["xargs"], raw["latencies"]
    ratio = swarmd_run["seconds"] / xargs_run["seconds"]
    spawned = milliseconds([s.spawned for s in latencies])
    user = raw["user_view"]
    return {
        "swarmd_version": __version__,
        "user_view": {
            "tasks": args.user_tasks,
            "rounds": args.rounds,
            **user,
            "targets": {
                "warm_ratio": TARGET_WARM_RATIO,
                "cold_ratio": TARGET_COLD_RATIO,
                "waiting_cpu_s": TARGET_WAIT_CPU_S,
                "attempt_overhead_ms": TARGET_ATTEMPT_MS,
            },
            "meets_targets": {
                "warm_ratio": user["warm_ratio"]["median"] <= TARGET_WARM_RATIO,
                "cold_ratio": user["cold_ratio"]["median"] <= TARGET_COLD_RATIO,
                "waiting_cpu_s": user["waiting_cpu_s"]["median"] <= TARGET_WAIT_CPU_S,
                "warm_cli_cpu_s": user["warm_cli_cpu_s"]["median"] <= TARGET_WAIT_CPU_S,
                "attempt_overhead_ms": (
                    user["warm_attempt_overhead_ms"]["median"] <= TARGET_ATTEMPT_MS
                ),
            },
        },
        "tasks": args.tasks,
        "concurrency": args.concurrency,
        "worker_start": args.worker_start,
        "gate": GATE_OFF,
        "ideal_seconds": args.tasks / args.concurrency * float(SLEEP_SECONDS),
        "swarmd_seconds": round(swarmd_run["seconds"], 3),
        "xargs_seconds": round(xargs_run["seconds"], 3),
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "meets_ratio_target": ratio <= TARGET_RATIO,
        "swarmd_peak_concurrency": swarmd_run["peak_concurrency"],
        "swarmd_attempt_mean_seconds": round(swarmd_run["attempt_mean_seconds"], 3),
        "swarmd_attempt_p99_seconds": round(swarmd_run["attempt_p99_seconds"], 3),
        "swarmd_daemon_cpu_ms_per_task": round(swarmd_run["daemon_cpu_ms_per_task"], 1),
        "swarmd_worker_cpu_ms_per_task": round(swarmd_run["worker_cpu_ms_per_task"], 1),
        "xargs_cpu_ms_per_task": round(xargs_run["cpu_ms_per_task"], 1),
        "latency_samples": len(latencies),
        "create_time_offset_seconds": round(raw["create_time_offset"], 3),
        "submit_to_claim": milliseconds([s.claimed for s in latencies]),
        "submit_to_worker_process": spawned,
        "submit_to_command_running": milliseconds([s.command_started for s in latencies]),
        "target_p50_ms": TARGET_P50_MS,
        "meets_latency_target": spawned["p50_ms"] <= TARGET_P50_MS,
        "idle": {k: round(v, 4) for k, v in raw["idle"].items()},
        "worker": raw["worker"],
        "python_startup_seconds": round(raw["python_startup"], 3),
        "worker_startup_seconds": round(raw["worker_startup"], 3),
        "daemon_exit_code": raw["exit_code"],
        "daemon_tracebacks": raw["tracebacks"],
        "load_1m_before_after": [round(load, 2) for load in raw["load"]],
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }


def table_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    def ms(block: dict[str, float]) -> str:
        return f"p50 {block['p50_ms']:.0f} ms, p99 {block['p99_ms']:.0f} ms"

    mib = 2**20
    idle, worker = results["idle"], results["worker"]
    user = results["user_view"]

    def med(name: str, unit: str = "s", scale: float = 1.0, digits: int = 2) -> str:
        block = user[name]
        low, mid, high = (scale * block[k] for k in ("min", "median", "max"))
        return f"{mid:.{digits}f} {unit} ({low:.{digits}f}-{high:.{digits}f})"

    return [
        (
            "user's view",
            f"{user['tasks']} x sleep {SLEEP_SECONDS} at concurrency {results['concurrency']}, "
            f"{user['rounds']} rounds alternating, median (min-max)",
        ),
        ("  xargs -P", med("xargs_s")),
        (
            "  submit --wait, warm daemon",
            med("warm_s") + f": {med('warm_ratio', 'x')} of xargs (target <= {TARGET_WARM_RATIO}x)",
        ),
        (
            "  run-ticket --wait, no daemon",
            med("cold_s") + f": {med('cold_ratio', 'x')} of xargs (target <= {TARGET_COLD_RATIO}x)",
        ),
        (
            "  the waiting CLI's CPU",
            f"{med('warm_cli_cpu_s')} the whole submit --wait; {med('submit_alone_cpu_s')} "
            f"submit alone; the waiting {med('waiting_cpu_s', digits=3)} (target <= "
            f"{TARGET_WAIT_CPU_S} s)",
        ),
        ("  run-ticket --wait CPU (all)", med("cold_cpu_s") + " (the CLI, its daemon, workers)"),
        (
            "  swarmd's time per attempt",
            f"{med('warm_attempt_overhead_ms', 'ms', digits=1)} warm, "
            f"{med('cold_attempt_overhead_ms', 'ms', digits=1)} cold (attempt wall less the "
            f"{SLEEP_SECONDS} s sleep; target <= {TARGET_ATTEMPT_MS:g} ms)",
        ),
        ("  load average (1 min) at rounds", med("load_1m", "")),
        (
            "tasks",
            f"{results['tasks']} x sleep {SLEEP_SECONDS} at concurrency {results['concurrency']}",
        ),
        ("workers start by", results["worker_start"]),
        ("ideal", f"{results['ideal_seconds']:.2f} s"),
        ("xargs -P", f"{results['xargs_seconds']:.2f} s"),
        ("swarmd (created -> finished)", f"{results['swarmd_seconds']:.2f} s"),
        ("ratio", f"{results['ratio']:.2f}x (target <= {TARGET_RATIO}x)"),
        ("swarmd peak concurrency", str(results["swarmd_peak_concurrency"])),
        (
            "swarmd attempt mean / p99",
            f"{results['swarmd_attempt_mean_seconds']:.3f} s / "
            f"{results['swarmd_attempt_p99_seconds']:.3f} s (the command sleeps "
            f"{SLEEP_SECONDS} s)",
        ),
        (
            "CPU per task: daemon / worker",
            f"{results['swarmd_daemon_cpu_ms_per_task']:.0f} ms / "
            f"{results['swarmd_worker_cpu_ms_per_task']:.0f} ms "
            f"(xargs' sleep: {results['xargs_cpu_ms_per_task']:.1f} ms)",
        ),
        ("submit -> claim", ms(results["submit_to_claim"])),
        (
            "submit -> worker process",
            ms(results["submit_to_worker_process"]) + f" (target p50 <= {TARGET_P50_MS:.0f} ms)",
        ),
        ("submit -> command running", ms(results["submit_to_command_running"])),
        (
            "idle daemon CPU",
            f"{idle['cpu_seconds']:.3f} s over {idle['seconds']:g} s ({idle['cpu_percent']:.2f}%)",
        ),
        (
            "idle daemon RSS / USS",
            f"{idle['rss_bytes'] / mib:.1f} / {idle['uss_bytes'] / mib:.1f} MiB",
        ),
        (
            "worker RSS / USS",
            f"{worker['worker_rss_bytes'] / mib:.1f} / {worker['worker_uss_bytes'] / mib:.1f} "
            f"MiB (its sleep: {worker['command_rss_bytes'] / mib:.1f} MiB)",
        ),
        *(
            [
                (
                    "fork server RSS / USS",
                    f"{worker['forkserver_rss_bytes'] / mib:.1f} / "
                    f"{worker['forkserver_uss_bytes'] / mib:.1f} MiB (shared with its workers)",
                )
            ]
            if "forkserver_rss_bytes" in worker
            else []
        ),
        ("start-up: python -c pass", f"{results['python_startup_seconds'] * 1000:.0f} ms"),
        (
            "start-up: swarmd.worker --help",
            f"{results['worker_startup_seconds'] * 1000:.0f} ms",
        ),
        (
            "load average before / after",
            " / ".join(f"{load:.2f}" for load in results["load_1m_before_after"]),
        ),
        (
            "daemon exit / tracebacks",
            f"{results['daemon_exit_code']} / {results['daemon_tracebacks']}",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--latency-samples", type=int, default=40)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--worker-start", choices=("fork", "exec"), default="fork")
    parser.add_argument("--user-tasks", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if shutil.which("xargs") is None:
        print("xargs is needed for the comparison", file=sys.stderr)
        return 2

    print("gate off for the bench: " + " ".join(f"{k}={v}" for k, v in GATE_OFF.items()))
    print("bytecode caching on for the daemon and its workers (PYTHONDONTWRITEBYTECODE unset)")
    results = summarise(args, run_all(args))
    rows = table_rows(results)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "dispatch.json").write_text(json.dumps(results, indent=2) + "\n")
    met = results["meets_ratio_target"] and results["meets_latency_target"]
    clean = results["daemon_exit_code"] == 0 and not results["daemon_tracebacks"]
    return 0 if met and clean else 1


if __name__ == "__main__":
    sys.exit(main())
