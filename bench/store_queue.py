"""Queue benchmark: submit, claim latency by queue depth, and throughput against huey.

    python bench/store_queue.py [--tasks 100000] [--per-ticket 10000] [--rounds 10]

Prints a table and writes bench/results/queue.json. Steps:

1. submit one 10,000-task ticket (timed), then more, to 100,000 queued tasks;
2. claim latency: claim+complete in alternating blocks on that deep queue and on a second
   database kept at 1,000-1,100 queued tasks, timing each claim;
3. throughput: in alternating rounds, claim+complete a tenth of the deep queue, then
   enqueue and dequeue as many tasks through huey's ``SqliteStorage``, the reference peer.

Both comparisons alternate their two sides, because the machine is shared: whatever load
comes and goes falls on both sides alike.

Targets: claim p99 at ~100k queued within 2x of p99 at ~1k; our claim+complete throughput
at least huey's enqueue+dequeue throughput.

4. the two backends (``--backends``, or alone with ``--backends-only``): claim+complete
   throughput with 1, 8 and 32 claimers at once (each its own store, as daemons are), and
   the claim latency they see, on SQLite and on PostgreSQL (a server started in a
   temporary directory, as the tests start theirs), alternating the two, three rounds each.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huey.storage import SqliteStorage

from swarmd.models import TaskSpec, TicketSpec
from swarmd.store import Store

RESULTS = Path(__file__).resolve().parent / "results" / "queue.json"
LATENCY_SAMPLES = 2000  # claims timed at each depth
LATENCY_BLOCK = 100  # claims in a row on one database before switching to the other
SHALLOW_DEPTH = 1000  # the shallow queue is refilled to stay between this and one block more
PAYLOAD = b"x" * 64


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wide_ticket(index: int, size: int) -> TicketSpec:
    return TicketSpec(
        title=f"bench {index}", tasks=tuple(TaskSpec(name=f"t{i}") for i in range(size))
    )


async def submit_wide(store: Store, total: int, per_ticket: int) -> tuple[float, float]:
    """Submit ``total`` independent tasks; seconds for the first ticket and for all."""
    started = time.perf_counter()
    await store.submit_ticket(wide_ticket(0, min(per_ticket, total)))
    first = time.perf_counter() - started
    for index in range(1, -(-total // per_ticket)):
        await store.submit_ticket(wide_ticket(index, min(per_ticket, total - index * per_ticket)))
    return first, time.perf_counter() - started


async def run_tasks(store: Store, count: int, claim_seconds: list[float] | None = None) -> None:
    """Claim and complete ``count`` tasks, one after the other, timing each claim."""
    for _ in range(count):
        before = time.perf_counter()
        claimed = await store.claim_ready_task()
        if claim_seconds is not None:
            claim_seconds.append(time.perf_counter() - before)
        if claimed is None:
            raise RuntimeError("the queue ran dry before the benchmark was done")
        await store.complete_attempt(claimed.attempt.token)


def run_huey(storage: SqliteStorage, count: int) -> tuple[float, float]:
    """Enqueue then dequeue ``count`` tasks; seconds for each half."""
    started = time.perf_counter()
    for _ in range(count):
        storage.enqueue(PAYLOAD)
    enqueued = time.perf_counter()
    for _ in range(count):
        if storage.dequeue() is None:
            raise RuntimeError("huey lost a task")
    return enqueued - started, time.perf_counter() - enqueued


@dataclass
class Timings:
    deep_claims: list[float] = field(default_factory=list)
    shallow_claims: list[float] = field(default_factory=list)
    ours_tasks: int = 0
    ours_seconds: float = 0.0
    huey_tasks: int = 0
    huey_enqueue_seconds: float = 0.0
    huey_dequeue_seconds: float = 0.0


async def measure_latency(deep: Store, shallow: Store, timings: Timings) -> None:
    refill = 0
    while len(timings.deep_claims) < LATENCY_SAMPLES:
        await run_tasks(deep, LATENCY_BLOCK, timings.deep_claims)
        refill += 1
        await shallow.submit_ticket(wide_ticket(refill, LATENCY_BLOCK))
        await run_tasks(shallow, LATENCY_BLOCK, timings.shallow_claims)


async def measure_throughput(
    deep: Store, storage: SqliteStorage, remaining: int, rounds: int, timings: Timings
) -> None:
    per_round = remaining // rounds
    for _ in range(rounds):
        started = time.perf_counter()
        await run_tasks(deep, per_round)
        timings.ours_seconds += time.perf_counter() - started
        timings.ours_tasks += per_round
        enqueue_seconds, dequeue_seconds = run_huey(storage, per_round)
        timings.huey_enqueue_seconds += enqueue_seconds
        timings.huey_dequeue_seconds += dequeue_seconds
        timings.huey_tasks += per_round


async def thread_hop_us(samples: int = 5000) -> float:
    """What one hand-off to a thread and back costs, doing nothing: the price a verb pays
    when it cannot run inline (and what a thread hop per statement would cost each one)."""
    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        started = time.perf_counter()
        for _ in range(samples):
            await loop.run_in_executor(executor, int)
        return (time.perf_counter() - started) / samples * 1e6


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
    }


def summarize(
    timings: Timings, total: int, per_ticket: int, submit: tuple[float, float]
) -> dict[str, Any]:
    def latency(samples: list[float], depth: list[int]) -> dict[str, Any]:
        return {
            "depth": depth,
            "samples": len(samples),
            "p50_us": percentile(samples, 0.50) * 1e6,
            "p99_us": percentile(samples, 0.99) * 1e6,
        }

    ours_rate = timings.ours_tasks / timings.ours_seconds
    huey_seconds = timings.huey_enqueue_seconds + timings.huey_dequeue_seconds
    huey_rate = timings.huey_tasks / huey_seconds
    deep = latency(timings.deep_claims, [total - LATENCY_SAMPLES, total])
    shallow = latency(timings.shallow_claims, [SHALLOW_DEPTH, SHALLOW_DEPTH + LATENCY_BLOCK])
    ratio = deep["p99_us"] / shallow["p99_us"]
    return {
        "swarmd": {
            "submit_one_ticket_tasks": per_ticket,
            "submit_one_ticket_s": submit[0],
            "submit_total_tasks": total,
            "submit_total_s": submit[1],
            "claim_latency_deep": deep,
            "claim_latency_shallow": shallow,
            "claim_complete_tasks": timings.ours_tasks,
            "claim_complete_s": timings.ours_seconds,
            "claim_complete_per_s": ours_rate,
        },
        "huey": {
            "tasks": timings.huey_tasks,
            "enqueue_per_s": timings.huey_tasks / timings.huey_enqueue_seconds,
            "dequeue_per_s": timings.huey_tasks / timings.huey_dequeue_seconds,
            "tasks_per_s": huey_rate,
            "settings": "SqliteStorage defaults: WAL, synchronous=FULL, BEGIN EXCLUSIVE dequeue",
        },
        "targets": {
            "claim p99 deep within 2x of shallow": {"met": ratio <= 2.0, "detail": f"{ratio:.2f}x"},
            "claim+complete at least huey": {
                "met": ours_rate >= huey_rate,
                "detail": f"{ours_rate / huey_rate:.2f}x huey",
            },
        },
    }


def print_table(report: dict[str, Any]) -> None:
    ours, huey = report["swarmd"], report["huey"]
    deep, shallow = ours["claim_latency_deep"], ours["claim_latency_shallow"]
    rows = [
        (
            f"submit one {ours['submit_one_ticket_tasks']:,}-task ticket",
            f"{ours['submit_one_ticket_s']:.3f} s",
        ),
        (
            f"claim p50 / p99, {deep['depth'][0]:,}-{deep['depth'][1]:,} queued",
            f"{deep['p50_us']:.0f} / {deep['p99_us']:.0f} us",
        ),
        (
            f"claim p50 / p99, {shallow['depth'][0]:,}-{shallow['depth'][1]:,} queued",
            f"{shallow['p50_us']:.0f} / {shallow['p99_us']:.0f} us",
        ),
        (
            f"claim+complete {ours['claim_complete_tasks']:,} tasks",
            f"{ours['claim_complete_per_s']:,.0f} tasks/s",
        ),
        (f"huey enqueue {huey['tasks']:,}", f"{huey['enqueue_per_s']:,.0f} tasks/s"),
        (f"huey dequeue {huey['tasks']:,}", f"{huey['dequeue_per_s']:,.0f} tasks/s"),
        ("huey enqueue+dequeue", f"{huey['tasks_per_s']:,.0f} tasks/s"),
        ("one thread hand-off and back", f"{report['thread_hop_us']:.0f} us"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:>18}")
    print()
    for name, target in report["targets"].items():
        print(f"{name}: {'met' if target['met'] else 'MISSED'} ({target['detail']})")
    load = report["machine"]
    print(f"load average: {load['load_average_at_start']} -> {load['load_average_at_end']}")


CONCURRENCY = (1, 8, 32)
BACKEND_TASKS = 3000
BACKEND_ROUNDS = 3


async def claim_and_complete_together(location: Path | str, claimers: int) -> dict[str, float]:
    """``claimers`` stores claim and complete one queue of ``BACKEND_TASKS`` tasks at once."""
    async with await Store.open(location) as submitter:
        await submitter.submit_ticket(wide_ticket(0, BACKEND_TASKS))
    stores = [await Store.open(location) for _ in range(claimers)]
    claims: list[float] = []

    async def claimer(store: Store) -> None:
        while True:
            before = time.perf_counter()
            claimed = await store.claim_ready_task()
            claims.append(time.perf_counter() - before)
            if claimed is None:
                return
            await store.complete_attempt(claimed.attempt.token)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(claimer(store) for store in stores))
        elapsed = time.perf_counter() - started
    finally:
        for store in stores:
            await store.close()
    return {
        "tasks_per_s": BACKEND_TASKS / elapsed,
        "claim_p50_us": percentile(claims, 0.5) * 1e6,
        "claim_p99_us": percentile(claims, 0.99) * 1e6,
    }


async def compare_backends(directory: Path) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.support.postgres import find_bindir, start_server

    if find_bindir() is None:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
    server = start_server()
    results: dict[str, Any] = {"sqlite": {}, "postgresql": {}}
    try:
        for claimers in CONCURRENCY:
            runs: dict[str, list[dict[str, float]]] = {"sqlite": [], "postgresql": []}
            for round_ in range(BACKEND_ROUNDS):
                sqlite_path = directory / f"backends-{claimers}-{round_}.db"
                runs["sqlite"].append(await claim_and_complete_together(sqlite_path, claimers))
                url = server.new_database()
                runs["postgresql"].append(await claim_and_complete_together(url, claimers))
            for backend, samples in runs.items():
                results[backend][str(claimers)] = {
                    name: round(sorted(sample[name] for sample in samples)[len(samples) // 2], 1)
                    for name in samples[0]
                }
    finally:
        server.clean_up()
    return results


def print_backends(backends: dict[str, Any]) -> None:
    print("\nclaim+complete, N claimers at once (median of rounds):")
    print(f"{'claimers':>9} {'backend':>11} {'tasks/s':>9} {'claim p50':>11} {'claim p99':>11}")
    for claimers in CONCURRENCY:
        for backend in ("sqlite", "postgresql"):
            row = backends[backend][str(claimers)]
            print(
                f"{claimers:>9} {backend:>11} {row['tasks_per_s']:>9.0f} "
                f"{row['claim_p50_us']:>9.0f}us {row['claim_p99_us']:>9.0f}us"
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--per-ticket", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--backends", action="store_true", help="also compare the backends")
    parser.add_argument("--backends-only", action="store_true", help="only compare them")
    args = parser.parse_args()
    if args.backends_only:
        report_only: dict[str, Any] = {"machine": machine()}
        with tempfile.TemporaryDirectory(prefix="swarmd-bench-") as scratch:
            report_only["backends"] = await compare_backends(Path(scratch))
        report_only["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        out = RESULTS.with_name("queue_backends.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report_only, indent=2) + "\n")
        print_backends(report_only["backends"])
        print(f"\nwrote {out}")
        return
    if args.tasks < 2 * LATENCY_SAMPLES:
        parser.error(f"--tasks must be at least {2 * LATENCY_SAMPLES}")

    report: dict[str, Any] = {"machine": machine()}
    timings = Timings()
    with tempfile.TemporaryDirectory(prefix="swarmd-bench-") as scratch:
        directory = Path(scratch)
        report["thread_hop_us"] = await thread_hop_us()
        storage = SqliteStorage(name="bench", filename=str(directory / "huey.db"))
        async with (
            await Store.open(directory / "deep.db") as deep,
            await Store.open(directory / "shallow.db") as shallow,
        ):
            submit = await submit_wide(deep, args.tasks, args.per_ticket)
            await submit_wide(shallow, SHALLOW_DEPTH, args.per_ticket)
            await measure_latency(deep, shallow, timings)
            remaining = args.tasks - LATENCY_SAMPLES
            await measure_throughput(deep, storage, remaining, args.rounds, timings)
        storage.close()
        if args.backends:
            report["backends"] = await compare_backends(directory)

    report.update(summarize(timings, args.tasks, args.per_ticket, submit))
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    if "backends" in report:
        print_backends(report["backends"])
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    asyncio.run(main())
