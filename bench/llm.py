"""LLM pipeline speed: the makespan of many llm tasks, a worker's memory and start-up, and
the router's overhead over a bare httpx call.

    python -P bench/llm.py [--tasks 200] [--concurrency 10] [--latency 1.0] [--fast-latency 0.2]
                           [--requests 300] [--alone-tasks 10] [--alone-latency 0.5]
                           [--worker-start fork|exec] [--user-tasks 100] [--rounds 5]

Runs ``swarmd run-ticket FILE --wait`` on a ticket of ``--tasks`` independent llm tasks against
the loopback fake provider (``tests.support.fake_llm``, in its own process) answering each
request after ``--latency`` seconds, then again at ``--fast-latency``. The makespan (ticket
submitted -> ticket finished) is divided by the ideal, tasks x latency / concurrency.

While the slow run goes, a sampler thread reads every worker process (psutil): its start time
and its RSS (and, less often, its USS) while it waits on the server. Workers start as
``--worker-start`` says (``SWARMD_WORKER_START``, ``fork`` by default); a forked worker's RSS
counts the pages it shares with the fork server, its USS only its own. A worker's
spawn-to-first-request time runs from its process start to the server's record of its
request. Each attempt is then cut into segments (claim -> spawn -> request -> answer ->
attempt closed) to show where the time goes, and a short run of ``--alone-tasks`` one at a
time gives the same worker's figures free of contention.

Last, the router against a bare httpx call: the same server answering at once, the same
request body, ``--requests`` sequential requests each way, the router with an in-process
``LocalBroker`` (and again with the worker's ``ChannelBroker`` over a socketpair) whose rate
limit is out of reach.

The user's view comes first: ``--rounds`` rounds, each of ``--user-tasks`` requests sent by
``curl`` under ``xargs -P`` (as many at once as the concurrency) to the same server at
``--latency`` (the measured ideal), then the whole ``swarmd run-ticket FILE --wait`` with no
daemon (cold) on a ticket of as many llm tasks, timed from outside; median and range of each,
and of its ratio to the computed ideal (tasks x latency / concurrency) and to curl's.

Prints a table and writes ``bench/results/llm.json``. Targets: makespan / ideal at most 1.10,
the whole cold command at most 1.12x the ideal, worker RSS at most 40 MB,
spawn-to-first-request at most 150 ms (p50).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The fake provider lives in ``tests.support``: put the repository root on the path.
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import psutil  # noqa: E402

from swarmd.agents.llm import ChannelBroker  # noqa: E402
from swarmd.llm import (  # noqa: E402
    BudgetExceededError,
    ChatRequest,
    CooldownTable,
    LocalBroker,
    ModelCoolingError,
    Outcome,
    RateLimiter,
    Router,
    build_provider_config,
    create_http_client,
    refusal_to_dict,
)
from swarmd.llm.provider_config import Endpoint  # noqa: E402
from swarmd.llm.providers import OpenAIProvider  # noqa: E402
from swarmd.models import Attempt, Ticket  # noqa: E402
from swarmd.store import Store  # noqa: E402
from swarmd.wire.channel import Channel, WorkerCalls  # noqa: E402
from tests.support.fake_llm import FakeLLMControl  # noqa: E402
from tests.support.faults import last_user_text  # noqa: E402

MODEL = "openai/bench"
API_KEY = "bench-key-not-secret"
TARGET_RATIO = 1.10
TARGET_COLD_RATIO = 1.12
TARGET_RSS_MB = 40.0
TARGET_SPAWN_MS = 150.0
UNREACHABLE_RPM = 1_000_000  # the largest SWARMD_API_RATE_LIMIT_RPM takes
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MiB = 1024 * 1024


# -- the fake provider, in its own process --------------------------------------------------------


def start_fake_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tests.support.fake_llm", "--port", "0"]
    server = subprocess.Popen(
        [*command, "--latency", str(latency)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    if not line.startswith("fake-llm listening on "):
        server.kill()
        raise SystemExit(f"the fake provider did not start: {line!r}")
    return server, line.split()[-1]


# -- sampling the workers -------------------------------------------------------------------------


def process_start_wall_time(pid: int) -> float:
    """When ``pid`` started, in wall-clock seconds, to one clock tick.

    psutil's ``create_time`` adds the start tick to the boot time, which the kernel reports in
    whole seconds: up to a second off the wall clock. Counting back from ``CLOCK_BOOTTIME``
    (the clock the start tick is counted on) is exact to the tick.
    """
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        after_name = stat.read().rsplit(")", 1)[1].split()
    start_ticks = int(after_name[19])  # field 22 of proc(5); the split starts at field 3
    since_boot, now = time.clock_gettime(time.CLOCK_BOOTTIME), time.time()
    return now - (since_boot - start_ticks / CLOCK_TICKS)


USS_EVERY = 5
"""Read a worker's USS at every fifth sample only: it walks /proc/PID/smaps, which costs."""


@dataclass
class WorkerSeen:
    started_at: float
    rss: list[tuple[float, int]] = field(default_factory=list)  # (wall time, bytes)
    uss: list[tuple[float, int]] = field(default_factory=list)


class WorkerSampler(threading.Thread):
    """Polls the CLI's process tree: every worker's start time and RSS over its life."""

    def __init__(self, root_pid: int, interval: float = 0.1) -> None:
        super().__init__(name="worker-sampler", daemon=True)
        self.root_pid = root_pid
        self.interval = interval
        self.workers: dict[int, WorkerSeen] = {}
        self.daemon_cpu_s = 0.0
        self.forkserver_memory: list[tuple[int, int]] = []  # (RSS, USS) while workers run
        self._forkserver: psutil.Process | None = None
        self._ignored: set[int] = set()
        self._stopping = threading.Event()

    def run(self) -> None:
        rounds = 0
        while not self._stopping.wait(self.interval):
            try:
                root = psutil.Process(self.root_pid)
                children = root.children(recursive=True)
                cpu = root.cpu_times()
                self.daemon_cpu_s = cpu.user + cpu.system
            except psutil.Error:
                return
            for child in children:
                self._sample(child)
            rounds += 1
            if self._forkserver is not None and len(children) > 1 and rounds % USS_EVERY == 0:
                self._sample_forkserver(self._forkserver)

    def _sample_forkserver(self, server: psutil.Process) -> None:
        try:
            full = server.memory_full_info()
        except psutil.Error:
            return
        self.forkserver_memory.append((full.rss, full.uss))

    def _sample(self, child: psutil.Process) -> None:
        if child.pid in self._ignored:
            return
        try:
            seen = self.workers.get(child.pid)
            if seen is None:
                if not self._is_worker(child):
                    self._ignored.add(child.pid)
                    return
                seen = self.workers[child.pid] = WorkerSeen(process_start_wall_time(child.pid))
            now = time.time()
            seen.rss.append((now, child.memory_info().rss))
            if len(seen.rss) % USS_EVERY == 1:
                seen.uss.append((now, child.memory_full_info().uss))
        except (psutil.Error, OSError):
            return  # it exited between the listing and the read

    def _is_worker(self, child: psutil.Process) -> bool:
        command = child.cmdline()
        if "swarmd.worker" in command:
            return True  # exec'd
        if "swarmd.worker.forkserver" not in command:
            return False
        if child.ppid() == self.root_pid:  # the fork server itself
            self._forkserver = child
            return False
        return True  # forked: its command line is the fork server's

    def stop(self) -> None:
        self._stopping.set()
        self.join()


# -- one run of the pipeline -----------------------------------------------------------------------


@dataclass
class PipelineRun:
    latency: float
    tasks: int
    concurrency: int
    ticket: Ticket
    attempts: dict[str, Attempt]  # task name -> its (only) attempt
    requests: dict[str, float]  # task name -> when the server read its request (wall)
    cli_wall_s: float
    cpu_s: float  # the CLI process and every worker, user + system
    bench_cpu_s: float  # this process (the sampler thread) and the fake provider
    host_busy_s: float  # every CPU of the host, busy time over the run
    sampler: WorkerSampler | None

    @property
    def others_cpu_s(self) -> float:
        """CPU that processes foreign to the bench used during the run."""
        return max(0.0, self.host_busy_s - self.cpu_s - self.bench_cpu_s)

    @property
    def makespan(self) -> float:
        assert self.ticket.finished_at is not None
        return self.ticket.finished_at - self.ticket.created_at

    @property
    def ideal(self) -> float:
        return self.tasks * self.latency / self.concurrency

    @property
    def ratio(self) -> float:
        return self.makespan / self.ideal


def pipeline_env(home: Path, url: str, concurrency: int, worker_start: str) -> dict[str, str]:
    hidden = ("OPENAI_", "ANTHROPIC_", "MINIMAX_", "OLLAMA_", "SWARMD_", "NOTIFY_SOCKET")
    env = {k: v for k, v in os.environ.items() if not k.startswith(hidden)}
    env.update(
        SWARMD_HOME=str(home),
        SWARMD_MAX_CONCURRENT_WORKERS=str(concurrency),
        SWARMD_API_RATE_LIMIT_RPM=str(UNREACHABLE_RPM),
        # Ten busy workers push a two-core host's load average past the default gate (1.5 per
        # CPU) and it would hold spawns: the gate is not what this measures.
        SWARMD_MAX_LOAD="1000",
        SWARMD_PRIMARY_MODEL=MODEL,
        SWARMD_WORKER_START=worker_start,
        OPENAI_API_KEY=API_KEY,
        OPENAI_BASE_URL=f"{url}/v1",
    )
    return env


def run_pipeline(
    scratch: Path,
    control: FakeLLMControl,
    server: psutil.Process,
    label: str,
    *,
    tasks: int,
    concurrency: int,
    latency: float,
    sample: bool,
    worker_start: str,
) -> PipelineRun:
    control.reset()
    control.set_latency(latency)
    home = scratch / f"home-{label}"
    home.mkdir()
    names = [f"t{i:03d}" for i in range(tasks)]
    ticket = {
        "title": f"bench at {latency:g} s",
        "agent": "llm",
        "tasks": [{"name": name, "prompt": f"bench task {name}"} for name in names],
    }
    path = scratch / f"ticket-{label}.json"
    path.write_text(json.dumps(ticket))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    host_before = host_busy_seconds()
    bench_before = bench_cpu_seconds(server)
    started = time.perf_counter()
    cli = subprocess.Popen(
        [sys.executable, "-m", "swarmd", "run-ticket", str(path), "--wait"],
        cwd=scratch,
        env=pipeline_env(home, control.url, concurrency, worker_start),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sampler = WorkerSampler(cli.pid) if sample else None
    if sampler is not None:
        sampler.start()
    output, errors = cli.communicate(timeout=600)
    cli_wall = time.perf_counter() - started
    if sampler is not None:
        sampler.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    host_busy = host_busy_seconds() - host_before
    bench_cpu = bench_cpu_seconds(server) - bench_before
    if cli.returncode != 0:
        raise SystemExit(f"run-ticket failed ({cli.returncode}):\n{output}{errors[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    requests: dict[str, float] = {}
    for record in control.requests():
        name = last_user_text(record.body).removeprefix("bench task ")
        requests[name] = min(record.at, requests.get(name, record.at))
    stored_ticket, attempts = asyncio.run(read_outcome(home / "swarmd.db"))
    return PipelineRun(
        latency,
        tasks,
        concurrency,
        stored_ticket,
        attempts,
        requests,
        cli_wall,
        cpu,
        bench_cpu,
        host_busy,
        sampler,
    )


def time_curl_baseline(url: str, *, tasks: int, concurrency: int) -> float:
    """Wall time of ``tasks`` chat requests sent by ``curl``, ``concurrency`` at a time."""
    body = '{"model": "bench", "messages": [{"role": "user", "content": "baseline {}"}]}'
    argv = ["xargs", "-P", str(concurrency), "-I{}", "curl", "-sf", "-o", "/dev/null"]
    argv += ["-H", "Content-Type: application/json", "-H", f"Authorization: Bearer {API_KEY}"]
    argv += ["-d", body, f"{url}/v1/chat/completions"]
    started = time.perf_counter()
    subprocess.run(argv, input="".join(f"{i}\n" for i in range(tasks)), text=True, check=True)
    return time.perf_counter() - started


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def measure_user_view(
    scratch: Path,
    control: FakeLLMControl,
    server: psutil.Process,
    *,
    tasks: int,
    concurrency: int,
    latency: float,
    rounds: int,
    worker_start: str,
) -> dict[str, Any]:
    """Rounds of curl's requests and a cold ``run-ticket --wait``, one after the other."""
    figures: dict[str, list[float]] = {}
    ideal = tasks * latency / concurrency
    for number in range(rounds):
        print(f"  round {number + 1} of {rounds} ...", flush=True)
        load = os.getloadavg()[0]
        control.reset()
        control.set_latency(latency)
        curl = time_curl_baseline(control.url, tasks=tasks, concurrency=concurrency)
        run = run_pipeline(
            scratch,
            control,
            server,
            f"user-{number}",
            tasks=tasks,
            concurrency=concurrency,
            latency=latency,
            sample=False,
            worker_start=worker_start,
        )
        for name, value in (
            ("load_1m", load),
            ("curl_s", curl),
            ("cold_s", run.cli_wall_s),
            ("cold_ratio_to_ideal", run.cli_wall_s / ideal),
            ("cold_ratio_to_curl", run.cli_wall_s / curl),
            ("curl_ratio_to_ideal", curl / ideal),
            ("makespan_ratio", run.ratio),
            ("cold_cpu_s", run.cpu_s),
        ):
            figures.setdefault(name, []).append(value)
    return {
        "tasks": tasks,
        "concurrency": concurrency,
        "latency_s": latency,
        "ideal_s": ideal,
        "rounds": rounds,
        **{name: spread(values) for name, values in figures.items()},
    }


def bench_cpu_seconds(server: psutil.Process) -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    provider = server.cpu_times()
    return own.ru_utime + own.ru_stime + provider.user + provider.system


def host_busy_seconds() -> float:
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq + times.steal


async def read_outcome(db_path: Path) -> tuple[Ticket, dict[str, Attempt]]:
    async with await Store.open(db_path) as store:
        ticket = await store.get_ticket(1)
        attempts = {}
        for task in await store.list_tasks(1):
            attempts[task.name] = (await store.list_attempts(task.id))[-1]
    return ticket, attempts


# -- what the runs show --------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def worker_figures(run: PipelineRun) -> dict[str, Any]:
    """RSS while waiting on the server, spawn-to-first-request, and the attempt's segments."""
    assert run.sampler is not None
    by_pid = {a.pid: name for name, a in run.attempts.items() if a.pid is not None}
    waiting_rss: list[float] = []
    waiting_uss: list[float] = []
    spawn_ms: list[float] = []
    segments: dict[str, list[float]] = {
        "claim_to_spawn": [],
        "spawn_to_request": [],
        "request_to_answer": [],
        "answer_to_closed": [],
    }
    for pid, seen in run.sampler.workers.items():
        name = by_pid.get(pid)
        if name is None or name not in run.requests:
            continue
        asked = run.requests[name]
        attempt = run.attempts[name]
        answered = asked + run.latency
        during_wait = [rss for at, rss in seen.rss if asked <= at <= answered]
        if during_wait:
            waiting_rss.append(max(during_wait) / MiB)
        uss_during_wait = [uss for at, uss in seen.uss if asked <= at <= answered]
        if uss_during_wait:
            waiting_uss.append(max(uss_during_wait) / MiB)
        spawn_ms.append((asked - seen.started_at) * 1000)
        segments["claim_to_spawn"].append(seen.started_at - attempt.started_at)
        segments["spawn_to_request"].append(asked - seen.started_at)
        segments["request_to_answer"].append(run.latency)
        if attempt.ended_at is not None:
            segments["answer_to_closed"].append(attempt.ended_at - answered)
    durations = [a.ended_at - a.started_at for a in run.attempts.values() if a.ended_at is not None]
    return {
        "workers_sampled": len(spawn_ms),
        "rss_mb_p50": round(statistics.median(waiting_rss), 1) if waiting_rss else None,
        "rss_mb_max": round(max(waiting_rss), 1) if waiting_rss else None,
        "rss_samples": len(waiting_rss),
        "uss_mb_p50": round(statistics.median(waiting_uss), 1) if waiting_uss else None,
        "uss_mb_max": round(max(waiting_uss), 1) if waiting_uss else None,
        "uss_samples": len(waiting_uss),
        "forkserver_rss_uss_mb": (
            [
                round(statistics.median(n for n, _ in run.sampler.forkserver_memory) / MiB, 1),
                round(statistics.median(n for _, n in run.sampler.forkserver_memory) / MiB, 1),
            ]
            if run.sampler.forkserver_memory
            else None
        ),
        "spawn_to_first_request_ms_p50": round(statistics.median(spawn_ms), 1),
        "spawn_to_first_request_ms_p90": round(percentile(spawn_ms, 0.9), 1),
        "attempt_s_mean": round(statistics.fmean(durations), 3),
        "segments_ms_p50": {k: round(statistics.median(v) * 1000, 1) for k, v in segments.items()},
        "busy_fraction": round(sum(durations) / (run.makespan * run.concurrency), 3),
        "cpu_s_total": round(run.cpu_s, 1),
        "cpu_s_daemon": round(run.sampler.daemon_cpu_s, 1),
        "cpu_ms_per_worker": round((run.cpu_s - run.sampler.daemon_cpu_s) / run.tasks * 1000),
    }


def pipeline_figures(run: PipelineRun) -> dict[str, Any]:
    return {
        "tasks": run.tasks,
        "concurrency": run.concurrency,
        "latency_s": run.latency,
        "makespan_s": round(run.makespan, 2),
        "ideal_s": round(run.ideal, 2),
        "ratio": round(run.ratio, 3),
        "cli_wall_s": round(run.cli_wall_s, 2),
        "requests_seen": len(run.requests),
        "cpu_s_total": round(run.cpu_s, 1),
        "bench_and_fake_provider_cpu_s": round(run.bench_cpu_s, 1),
        "other_processes_cpu_s": round(run.others_cpu_s, 1),
    }


# -- the router against a bare httpx call ----------------------------------------------------------


class LoopbackChannelBroker:
    """The worker's ``ChannelBroker`` talking over a real socketpair to a ``LocalBroker``
    served in this same process and loop, as the daemon serves it."""

    def __init__(self, local: LocalBroker) -> None:
        self._local = local
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> ChannelBroker:
        worker_end, daemon_end = socket.socketpair()
        worker = await Channel.from_socket(worker_end)
        self._daemon = await Channel.from_socket(daemon_end)
        calls = WorkerCalls(worker)
        self._worker = worker
        self._tasks = [
            asyncio.create_task(calls.route_replies(), name="route-replies"),
            asyncio.create_task(self._serve(), name="serve-calls"),
        ]
        return ChannelBroker(calls)

    async def __aexit__(self, *exc: object) -> None:
        await self._worker.close()
        await self._daemon.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self) -> None:
        while True:
            message = await self._daemon.receive()
            args = message["args"]
            value: Any = None
            if message["method"] == "acquire":
                try:
                    await self._local.acquire(args["model"], deadline=args["deadline"])
                except (ModelCoolingError, BudgetExceededError) as refusal:
                    value = refusal_to_dict(refusal)  # refusals travel as data, as the daemon's
            else:
                await self._local.report(args["model"], Outcome.from_dict(args["outcome"]))
            await self._daemon.send({"type": "reply", "id": message["id"], "value": value})


async def time_calls(call: Callable[[], Awaitable[object]], count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return times


async def router_overhead(url: str, count: int) -> dict[str, Any]:
    endpoint = Endpoint(f"{url}/v1", API_KEY)
    config = build_provider_config(openai_api_key=API_KEY, openai_base_url=endpoint.base_url)
    request = ChatRequest.from_prompt("bench task overhead", system="You are a bench.")
    target, headers, body = OpenAIProvider(endpoint).build_request("bench", request)

    def local_broker() -> LocalBroker:
        return LocalBroker(RateLimiter(UNREACHABLE_RPM), CooldownTable())

    async with (
        httpx.AsyncClient(trust_env=False) as bare_client,
        create_http_client(trust_env=False) as router_client,
        LoopbackChannelBroker(local_broker()) as channel_broker,
    ):
        direct = Router(router_client, config, local_broker())
        over_channel = Router(router_client, config, channel_broker)

        async def bare() -> object:
            response = await bare_client.post(target, headers=headers, json=body)
            response.raise_for_status()
            return response.json()

        async def routed(router: Router) -> object:
            return await router.complete(request, [MODEL], deadline=time.time() + 600)

        variants: dict[str, Callable[[], Awaitable[object]]] = {
            "bare_httpx": bare,
            "router_local_broker": lambda: routed(direct),
            "router_channel_broker": lambda: routed(over_channel),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for call in variants.values():
            await time_calls(call, 20)  # warm the connections and the code paths
        # Interleaved in small blocks, so a change of machine load hits every variant alike.
        block = 25
        for _ in range(max(1, count // block)):
            for name, call in variants.items():
                times[name] += await time_calls(call, block)
    bare_p50 = statistics.median(times["bare_httpx"])
    figures: dict[str, Any] = {"requests_each": len(times["bare_httpx"])}
    for name, values in times.items():
        figures[name] = {
            "p50_us": round(statistics.median(values) * 1e6),
            "mean_us": round(statistics.fmean(values) * 1e6),
            "p90_us": round(percentile(values, 0.9) * 1e6),
            "overhead_p50_us": round((statistics.median(values) - bare_p50) * 1e6),
        }
    return figures


# -- the report ---------------------------------------------------------------------------------


def print_table(results: dict[str, Any]) -> None:
    slow, fast, worker = results["slow"], results["fast"], results["worker"]
    alone = results["worker_alone"]
    overhead = results["router_overhead"]
    segments = worker["segments_ms_p50"]
    user = results["user_view"]

    def med(name: str, unit: str) -> str:
        block = user[name]
        return f"{block['median']:.3f}{unit} ({block['min']:.3f}-{block['max']:.3f})"

    rows = [
        (
            f"user's view, {user['tasks']} tasks x {user['latency_s']:g} s / {user['concurrency']}",
            f"{user['rounds']} rounds alternating, median (min-max); ideal {user['ideal_s']:g} s",
        ),
        ("  curl under xargs -P", med("curl_s", " s") + f": {med('curl_ratio_to_ideal', 'x')}"),
        (
            "  run-ticket --wait, no daemon",
            med("cold_s", " s") + f": {med('cold_ratio_to_ideal', 'x')} of the ideal "
            f"(target <= {TARGET_COLD_RATIO}x), {med('cold_ratio_to_curl', 'x')} of curl's",
        ),
        ("  its CPU (CLI, daemon, workers)", med("cold_cpu_s", " s")),
        ("  load average (1 min) at rounds", med("load_1m", "")),
        (
            f"makespan, {slow['tasks']} tasks x {slow['latency_s']:g} s / {slow['concurrency']}",
            f"{slow['makespan_s']:.2f} s (ideal {slow['ideal_s']:.0f} s): ratio "
            f"{slow['ratio']:.3f} (target <= {TARGET_RATIO})",
        ),
        (
            f"makespan, {fast['tasks']} tasks x {fast['latency_s']:g} s / {fast['concurrency']}",
            f"{fast['makespan_s']:.2f} s (ideal {fast['ideal_s']:.0f} s): "
            f"ratio {fast['ratio']:.3f}",
        ),
        ("workers start by", results["worker_start"]),
        (
            "worker RSS waiting on the server",
            f"p50 {worker['rss_mb_p50']} MB, max {worker['rss_mb_max']} MB "
            f"(target <= {TARGET_RSS_MB:g} MB)",
        ),
        (
            "worker USS waiting on the server",
            f"p50 {worker['uss_mb_p50']} MB, max {worker['uss_mb_max']} MB "
            f"({worker['uss_samples']} workers sampled)",
        ),
        (
            "fork server RSS / USS (p50)",
            " / ".join(f"{mb} MB" for mb in worker["forkserver_rss_uss_mb"])
            if worker["forkserver_rss_uss_mb"]
            else "none",
        ),
        (
            "worker spawn -> first request",
            f"p50 {worker['spawn_to_first_request_ms_p50']} ms, "
            f"p90 {worker['spawn_to_first_request_ms_p90']} ms (target p50 <= {TARGET_SPAWN_MS:g})",
        ),
        (
            "  the same, one worker alone",
            f"p50 {alone['spawn_to_first_request_ms_p50']} ms, "
            f"p90 {alone['spawn_to_first_request_ms_p90']} ms "
            f"({alone['tasks']} tasks, {alone['cpu_ms_per_worker']} ms CPU per worker)",
        ),
        (
            "attempt segments (p50)",
            f"claim->spawn {segments['claim_to_spawn']} ms, spawn->request "
            f"{segments['spawn_to_request']} ms, answer->closed {segments['answer_to_closed']} ms",
        ),
        (
            "slots busy / CPU",
            f"{worker['busy_fraction']:.1%} of slot time; CPU {worker['cpu_s_total']} s "
            f"(daemon {worker['cpu_s_daemon']} s, {worker['cpu_ms_per_worker']} ms per worker); "
            f"bench + fake provider {slow['bench_and_fake_provider_cpu_s']} s; "
            f"foreign processes {slow['other_processes_cpu_s']} s",
        ),
    ]
    for name in ("router_local_broker", "router_channel_broker"):
        figures = overhead[name]
        rows.append(
            (
                name.replace("_", " "),
                f"p50 {figures['p50_us']} us vs bare httpx {overhead['bare_httpx']['p50_us']} us: "
                f"+{figures['overhead_p50_us']} us per request ({overhead['requests_each']} each)",
            )
        )
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--fast-latency", type=float, default=0.2)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--alone-tasks", type=int, default=10, help="tasks run one at a time")
    parser.add_argument("--alone-latency", type=float, default=0.5)
    parser.add_argument("--worker-start", choices=("fork", "exec"), default="fork")
    parser.add_argument("--user-tasks", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    load_at_start = [round(x, 2) for x in os.getloadavg()]
    server, url = start_fake_server(args.latency)
    control = FakeLLMControl(url)
    served = psutil.Process(server.pid)
    try:
        with tempfile.TemporaryDirectory(prefix="swarmd-bench-llm-") as scratch:
            root = Path(scratch)
            shape = {"tasks": args.tasks, "concurrency": args.concurrency}
            mode = args.worker_start
            print(
                f"the user's view: {args.rounds} rounds of {args.user_tasks} requests by curl, "
                f"then as many llm tasks by run-ticket --wait ...",
                flush=True,
            )
            user_view = measure_user_view(
                root,
                control,
                served,
                tasks=args.user_tasks,
                concurrency=args.concurrency,
                latency=args.latency,
                rounds=args.rounds,
                worker_start=mode,
            )
            print(f"{args.tasks} llm tasks at {args.latency:g} s ...", flush=True)
            slow = run_pipeline(
                root,
                control,
                served,
                "slow",
                latency=args.latency,
                sample=True,
                worker_start=mode,
                **shape,
            )
            print(f"{args.tasks} llm tasks at {args.fast_latency:g} s ...", flush=True)
            fast = run_pipeline(
                root,
                control,
                served,
                "fast",
                latency=args.fast_latency,
                sample=False,
                worker_start=mode,
                **shape,
            )
            # The same worker with the machine to itself: its fixed cost, without contention.
            print(f"{args.alone_tasks} llm tasks one at a time ...", flush=True)
            alone = run_pipeline(
                root,
                control,
                served,
                "alone",
                tasks=args.alone_tasks,
                concurrency=1,
                latency=args.alone_latency,
                sample=True,
                worker_start=mode,
            )
        print(f"router overhead, {args.requests} requests each way ...", flush=True)
        control.reset()
        control.set_latency(0.0)
        overhead = asyncio.run(router_overhead(url, args.requests))
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stdout is not None:
            server.stdout.close()

    worker = worker_figures(slow)
    results = {
        "user_view": user_view,
        "worker_start": args.worker_start,
        "slow": pipeline_figures(slow),
        "fast": pipeline_figures(fast),
        "worker": worker,
        "worker_alone": {**pipeline_figures(alone), **worker_figures(alone)},
        "router_overhead": overhead,
        "targets": {
            "cold_ratio_to_ideal": TARGET_COLD_RATIO,
            "ratio": TARGET_RATIO,
            "rss_mb": TARGET_RSS_MB,
            "spawn_to_first_request_ms_p50": TARGET_SPAWN_MS,
        },
        "meets_targets": {
            "cold_ratio_to_ideal": user_view["cold_ratio_to_ideal"]["median"] <= TARGET_COLD_RATIO,
            "ratio": slow.ratio <= TARGET_RATIO,
            "rss_mb": worker["rss_mb_max"] <= TARGET_RSS_MB,
            "spawn_to_first_request_ms_p50": (
                worker["spawn_to_first_request_ms_p50"] <= TARGET_SPAWN_MS
            ),
        },
        "machine": {
            "python": platform.python_version(),
            "httpx": httpx.__version__,
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
    }
    print_table(results)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "llm.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(results["meets_targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
