"""Chaos: a DAG of command tasks survives SIGKILLs of the daemon, the fork server and workers.

One ticket of about 100 command tasks (fan-outs and fan-ins; some leave a background child
behind), run by a real daemon that the test kills at random moments, round after round:

- SIGKILL of the daemon (the parent-death chain must leave no process behind);
- SIGSTOP of the daemon until one of its workers has finished, then SIGKILL (the worker's
  result is never read: its task runs again, without burning an attempt);
- SIGKILL of the fork server (its workers go with it: interrupted, not failed);
- SIGKILL of one worker (a failed attempt, retried);
- after the ticket finished, SIGKILL between the finish and its delivery.

After each daemon kill, no process of the old daemon's tree may be left; at the end every
task succeeded with exactly one accepted completion, failed attempts number no more than
the workers killed, and the delivery passes ``verify-archive``.

Seeded: ``SWARMD_CHAOS_SEED=N`` replays a run; every failure names its seed.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from swarmd.models import ExitReason, TaskState, TicketState
from tests.support.child_processes import OrphanWatch, is_alive, poll_until
from tests.support.cli import Daemon, attempts_of, swarmd, tasks_of, ticket_of, write_ticket

LAYERS = (1, 12, 24, 24, 24, 12, 1)  # 98 tasks: each needs one to three of the layer above
TASK_SECONDS = (0.1, 0.5)
ROUND_SECONDS = (0.3, 1.2)
MAX_ACTIONS = 14  # then the run is left to finish: a loaded machine must still get there
ACTIONS = ("kill_daemon", "stop_then_kill_daemon", "kill_forkserver", "kill_worker")
FAILED = {
    ExitReason.ERROR,
    ExitReason.EXIT_CODE,
    ExitReason.SIGNAL,
    ExitReason.TIMEOUT,
    ExitReason.MEMORY,
    ExitReason.HUNG,
}


def chaos_seeds() -> list[int]:
    pinned = os.environ.get("SWARMD_CHAOS_SEED")
    if pinned:
        return [int(pinned)]
    return [random.SystemRandom().randrange(2**32) for _ in range(2)]


def dag_ticket(rng: random.Random) -> dict[str, Any]:
    tasks: list[dict[str, Any]] = []
    above: list[str] = []
    for depth, width in enumerate(LAYERS):
        layer = []
        for i in range(width):
            name = f"l{depth}t{i}"
            seconds = round(rng.uniform(*TASK_SECONDS), 2)
            # Every third task leaves a background child that outlives the task's command.
            linger = "sleep 300 & " if rng.random() < 0.33 else ""
            script = f'{linger}echo "$SWARMD_TASK" > out.txt; sleep {seconds}'
            task: dict[str, Any] = {
                "name": name,
                "agent": "command",
                "command": ["sh", "-c", script],
                "max_attempts": 20,
            }
            if above:
                task["needs"] = rng.sample(above, k=min(len(above), rng.randint(1, 3)))
            tasks.append(task)
            layer.append(name)
        above = layer
    return {"title": "chaos", "tasks": tasks}


@dataclass
class Chaos:
    seed: int
    env: dict[str, str]
    home: Path
    rng: random.Random
    log: list[str] = field(default_factory=list)
    worker_kills: int = 0

    def fail(self, message: str) -> None:
        pytest.fail(f"chaos seed {self.seed}: {message}; actions: {', '.join(self.log)}")

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            self.fail(message)


def forkserver_of(daemon: Daemon) -> psutil.Process | None:
    for child in psutil.Process(daemon.pid).children():
        try:
            if "swarmd.worker.forkserver" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


def workers_of(daemon: Daemon) -> list[psutil.Process]:
    zygote = forkserver_of(daemon)
    if zygote is None:
        return []
    try:
        return [w for w in zygote.children() if w.status() != psutil.STATUS_ZOMBIE]
    except psutil.Error:
        return []


def kill_daemon(chaos: Chaos, daemon: Daemon, orphans: OrphanWatch) -> None:
    daemon.signal(signal.SIGKILL)
    daemon.wait()
    daemon.stop()  # closes its pipe
    survivors = orphans.wait_for_none(timeout=10.0)
    chaos.check(
        survivors == [],
        f"processes outlived the daemon: {[(p.pid, safe_cmdline(p)) for p in survivors]}",
    )


def safe_cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return "?"


def one_round(chaos: Chaos, daemon: Daemon, orphans: OrphanWatch) -> bool:
    """One random action on a running daemon; True if the daemon was killed."""
    action = chaos.rng.choice(ACTIONS)
    if action == "kill_daemon":
        chaos.log.append(action)
        kill_daemon(chaos, daemon, orphans)
        return True
    if action == "stop_then_kill_daemon":
        workers = workers_of(daemon)
        if not workers:
            return False
        chaos.log.append(action)
        daemon.signal(signal.SIGSTOP)
        # A worker finishes (its result sits unread in the channel), then the daemon dies.
        poll_until(lambda: any(not is_alive(w.pid) for w in workers), timeout=10.0)
        kill_daemon(chaos, daemon, orphans)
        return True
    if action == "kill_forkserver":
        zygote = forkserver_of(daemon)
        if zygote is None:
            return False
        chaos.log.append(action)
        zygote.send_signal(signal.SIGKILL)
        return False
    workers = workers_of(daemon)
    if not workers:
        return False
    victim = chaos.rng.choice(workers)
    chaos.log.append(f"kill_worker({victim.pid})")
    try:
        victim.send_signal(signal.SIGKILL)
    except psutil.NoSuchProcess:
        chaos.log.append("(it had exited)")
        return False
    chaos.worker_kills += 1
    return False


def kill_between_finish_and_delivery(
    chaos: Chaos, daemon: Daemon, orphans: OrphanWatch, tmp_path: Path
) -> int:
    """A small ticket with a large output: SIGKILL once it finished, if before its delivery."""
    big = 'head -c 30000000 /dev/urandom > big.bin; echo "$SWARMD_TASK" > out.txt'
    ticket = {
        "title": "late",
        "tasks": [{"name": "big", "agent": "command", "command": ["sh", "-c", big]}],
    }
    submitted = swarmd("submit", str(write_ticket(tmp_path, ticket, "late.json")), env=chaos.env)
    chaos.check(submitted.returncode == 0, f"submit failed: {submitted.stderr}")
    ticket_id = int(submitted.stdout.strip())
    delivery = chaos.home / "outputs" / str(ticket_id) / "delivery.tar.gz"
    finished = poll_until(
        lambda: ticket_of(chaos.home, ticket_id).state.is_terminal, timeout=60, interval=0.005
    )
    chaos.check(finished, "the late ticket did not finish")
    hit = not delivery.exists()
    chaos.log.append(f"kill_after_finish(window hit: {hit})")
    kill_daemon(chaos, daemon, orphans)
    return ticket_id


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", chaos_seeds())
def test_a_dag_survives_random_kills_with_one_completion_per_task_and_nothing_left_behind(
    seed: int, tmp_path: Path, swarmd_env: dict[str, str], home: Path, orphans: OrphanWatch
) -> None:
    rng = random.Random(seed)
    env = {
        **swarmd_env,
        "SWARMD_MAX_CONCURRENT_WORKERS": "10",
        "SWARMD_RETRY_BACKOFF_SECONDS": "0.05",
        "SWARMD_RETRY_BACKOFF_MAX_SECONDS": "0.2",
        "SWARMD_SHUTDOWN_GRACE_SECONDS": "2",
        "SWARMD_LOG_LEVEL": "info",
    }
    chaos = Chaos(seed, env, home, rng)
    submitted = swarmd("submit", str(write_ticket(tmp_path, dag_ticket(rng))), env=env)
    chaos.check(submitted.returncode == 0, f"submit failed: {submitted.stderr}")
    ticket_id = int(submitted.stdout.strip())

    deadline = time.monotonic() + 200
    daemon = Daemon(env, home).start()
    try:
        while not ticket_of(home, ticket_id).state.is_terminal:
            chaos.check(time.monotonic() < deadline, "the ticket did not finish in time")
            time.sleep(rng.uniform(*ROUND_SECONDS))
            if ticket_of(home, ticket_id).state.is_terminal:
                break
            if len(chaos.log) < MAX_ACTIONS and one_round(chaos, daemon, orphans):
                daemon = Daemon(env, home).start()
        late_id = kill_between_finish_and_delivery(chaos, daemon, orphans, tmp_path)
        daemon = Daemon(env, home).start()
        for finished in (ticket_id, late_id):
            delivery = home / "outputs" / str(finished) / "delivery.tar.gz"
            chaos.check(poll_until(delivery.exists, timeout=30), f"no delivery for {finished}")
    finally:
        daemon.stop()
    chaos.check(orphans.wait_for_none(timeout=10.0) == [], "processes outlived the last stop")
    print(f"chaos seed {seed}: {', '.join(chaos.log)}")  # shown with -s, and on failure

    chaos.check(
        ticket_of(home, ticket_id).state is TicketState.SUCCEEDED,
        f"the ticket ended {ticket_of(home, ticket_id).state.value}",
    )
    failed: list[str] = []
    for task in tasks_of(home, ticket_id):
        chaos.check(task.state is TaskState.SUCCEEDED, f"{task.name} ended {task.state.value}")
        attempts = attempts_of(home, task.id)
        accepted = [a for a in attempts if a.exit_reason is ExitReason.OK]
        chaos.check(len(accepted) == 1, f"{task.name} has {len(accepted)} accepted completions")
        failed += [
            f"{task.name}#{a.number} {a.exit_reason.value}: {a.error}"
            for a in attempts
            if a.exit_reason in FAILED
        ]
    chaos.check(
        len(failed) <= chaos.worker_kills,
        f"{len(failed)} failed attempts for {chaos.worker_kills} workers killed: "
        + "; ".join(failed),
    )
    for finished in (ticket_id, late_id):
        check = swarmd(
            "verify-archive", str(home / "outputs" / str(finished) / "delivery.tar.gz"), env=env
        )
        chaos.check(check.returncode == 0, f"delivery {finished}: {check.stderr.strip()}")
