"""Soak: thousands of tasks, a tenth failing at random, through one daemon; its memory must hold.

    python bench/soak.py [--tasks 2000] [--tickets 20] [--concurrency 10] [--failure-rate 0.1]
                         [--out bench/results/soak.json]

Starts ``swarmd run`` on a fresh home with ``SWARMD_MAX_ATTEMPTS=1`` (a failure is final, so
it is counted once) and the metrics textfile on, then submits ``--tasks`` command tasks in
``--tickets`` tickets. Each task is ``sh -c`` drawing two bytes from /dev/urandom and exiting 1
with probability ``--failure-rate``: the failures are random at run time, not chosen up front.
The spawn gate's memory and load limits are lifted: on a shared two-core machine they would
measure the neighbours, not the daemon.

A sampler polls the queue and the daemon's RSS (the daemon process alone, not its workers)
every 0.2 s. The figures: RSS once the first 200 tasks have finished, RSS once all have, and
their ratio (target: at most 1.10). Every task must be accounted for: succeeded + dead ==
``--tasks``, with one attempt each, one ``attempt_finished`` log line each, and the daemon's
last metrics textfile agreeing.

Prints a summary and writes it, with the RSS samples, to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from swarmd.models import TaskSpec, TicketSpec
from swarmd.store import Store

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.10
EARLY_MARK = 200
MiB = 1024 * 1024


def failing_command(rate: float) -> tuple[str, ...]:
    """``sh -c`` that exits 1 with probability ``rate``, drawn when it runs."""
    threshold = round(rate * 65536)
    script = f'n=$(od -An -N2 -tu2 /dev/urandom); [ "$n" -ge {threshold} ]'
    return ("sh", "-c", script)


@dataclass
class Sample:
    elapsed_s: float
    finished: int
    rss_bytes: int


@dataclass
class Soak:
    tasks: int
    tickets: int
    concurrency: int
    failure_rate: float
    samples: list[Sample] = field(default_factory=list)
    early: Sample | None = None
    end: Sample | None = None
    states: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    log_lines: int = 0
    metrics_attempts: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    daemon_exit: int | None = None


def daemon_env(home: Path, concurrency: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMD_")}
    env.update(
        SWARMD_HOME=str(home),
        SWARMD_MAX_CONCURRENT_WORKERS=str(concurrency),
        SWARMD_MAX_ATTEMPTS="1",
        SWARMD_MIN_FREE_MEMORY_MB="0",
        SWARMD_MAX_LOAD="1000",
        SWARMD_SPAWN_SETTLE_SECONDS="0",
        SWARMD_LOG_LEVEL="info",
        SWARMD_METRICS_TEXTFILE=str(home / "swarmd.prom"),
    )
    return env


def start_daemon(home: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = home / "logs" / "swarmd.jsonl"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "swarmd", "run"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (log.exists() and '"supervisor_ready"' in log.read_text()):
        if daemon.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the daemon did not become ready")
        time.sleep(0.05)
    return daemon


async def submit(db: Path, tasks: int, tickets: int, rate: float) -> None:
    command = failing_command(rate)
    per_ticket = -(-tasks // tickets)
    async with await Store.open(db) as store:
        made = 0
        for number in range(tickets):
            count = min(per_ticket, tasks - made)
            if count <= 0:
                break
            specs = tuple(
                TaskSpec(name=f"t{i}", agent="command", command=command) for i in range(count)
            )
            spec = TicketSpec(title=f"soak {number}", tasks=specs)
            await store.submit_ticket(spec, default_max_attempts=1)
            made += count


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def finished_tasks(db: Path) -> int:
    sql = "SELECT COUNT(*) FROM tasks WHERE state IN ('succeeded', 'dead', 'cancelled', 'skipped')"
    return int(query(db, sql)[0][0])


def watch(soak: Soak, daemon: subprocess.Popen[bytes], db: Path, began: float) -> None:
    process = psutil.Process(daemon.pid)
    deadline = time.monotonic() + 3600
    while True:
        done = finished_tasks(db)
        sample = Sample(round(time.monotonic() - began, 2), done, process.memory_info().rss)
        soak.samples.append(sample)
        if soak.early is None and done >= EARLY_MARK:
            soak.early = sample
        if done >= soak.tasks:
            soak.end = sample
            return
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited with {daemon.returncode} mid-soak")
        if time.monotonic() > deadline:
            raise SystemExit(f"only {done} of {soak.tasks} tasks finished within an hour")
        time.sleep(0.2)


def read_back(soak: Soak, home: Path) -> None:
    db = home / "swarmd.db"
    soak.states = dict(query(db, "SELECT state, COUNT(*) FROM tasks GROUP BY state"))
    soak.attempts = dict(query(db, "SELECT exit_reason, COUNT(*) FROM attempts GROUP BY 1"))
    logs = sorted((home / "logs").glob("swarmd.jsonl*"))
    soak.log_lines = sum(
        line.count('"event": "attempt_finished"') for path in logs for line in path.open()
    )
    textfile = home / "swarmd.prom"
    if textfile.exists():
        for line in textfile.read_text().splitlines():
            if line.startswith("swarmd_attempts_total{"):
                reason = line.split('"')[1]
                soak.metrics_attempts[reason] = float(line.rsplit(" ", 1)[1])


def run(args: argparse.Namespace) -> Soak:
    soak = Soak(args.tasks, args.tickets, args.concurrency, args.failure_rate)
    with tempfile.TemporaryDirectory(prefix="swarmd-soak-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        env = daemon_env(home, args.concurrency)
        daemon = start_daemon(home, env)
        try:
            began = time.monotonic()
            asyncio.run(submit(home / "swarmd.db", args.tasks, args.tickets, args.failure_rate))
            watch(soak, daemon, home / "swarmd.db", began)
            soak.seconds = round(time.monotonic() - began, 1)
        finally:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
            soak.daemon_exit = daemon.wait(timeout=60)
        read_back(soak, home)
    return soak


def verdict(soak: Soak) -> dict[str, Any]:
    assert soak.early is not None and soak.end is not None
    ratio = soak.end.rss_bytes / soak.early.rss_bytes
    succeeded, dead = soak.states.get("succeeded", 0), soak.states.get("dead", 0)
    attempts = sum(soak.attempts.values())
    metric_reasons = {k: int(v) for k, v in soak.metrics_attempts.items() if v}
    checks = {
        "rss_within_target": ratio <= TARGET_RATIO,
        "every_task_accounted_for": succeeded + dead == soak.tasks,
        "one_attempt_per_task": attempts == soak.tasks,
        "one_log_line_per_attempt": soak.log_lines == attempts,
        "metrics_agree_with_database": metric_reasons == soak.attempts,
        "daemon_exited_cleanly": soak.daemon_exit == 0,
    }
    return {
        "rss_after_first_200_mib": round(soak.early.rss_bytes / MiB, 1),
        "rss_after_first_200_at_finished": soak.early.finished,
        "rss_at_end_mib": round(soak.end.rss_bytes / MiB, 1),
        "rss_peak_mib": round(max(s.rss_bytes for s in soak.samples) / MiB, 1),
        "rss_ratio_end_over_200": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "succeeded": succeeded,
        "dead": dead,
        "failure_fraction": round(dead / soak.tasks, 3),
        "attempts_by_reason": soak.attempts,
        "attempt_finished_log_lines": soak.log_lines,
        "metrics_attempts_by_reason": metric_reasons,
        "seconds": soak.seconds,
        "tasks_per_second": round(soak.tasks / soak.seconds, 1) if soak.seconds else None,
        "checks": checks,
        "passed": all(checks.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--tickets", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--failure-rate", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    args = parser.parse_args()

    soak = run(args)
    summary = verdict(soak)
    for key, value in summary.items():
        print(f"{key:34} {value}")
    result = {
        **summary,
        "tasks": soak.tasks,
        "tickets": soak.tickets,
        "concurrency": soak.concurrency,
        "failure_rate": soak.failure_rate,
        "samples": [asdict(s) for s in soak.samples[:: max(1, len(soak.samples) // 200)]],
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
