"""Several daemons, one PostgreSQL database: a fleet on this machine, each with its own home.

Each daemon is a real ``swarmd run`` with its own ``SWARMD_HOME``, all pointed at one
database of a real server. The homes share ``work/`` and ``outputs/`` (what README asks of
a fleet's hosts: a task reads the files of the tasks it needs, wherever they ran).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from tests.support.cli import Daemon, cli_env, python_command, swarmd, wait_until, write_ticket
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.timeout(420)

LEASE_SECONDS = 6


def fleet_env(home: Path, url: str, shared: Path) -> dict[str, str]:
    home.mkdir(parents=True)
    for folder in ("work", "outputs"):
        (home / folder).symlink_to(shared / folder, target_is_directory=True)
    return {
        **cli_env(home),
        "SWARMD_DATABASE_URL": url,
        "SWARMD_LEASE_SECONDS": str(LEASE_SECONDS),
        "SWARMD_MAX_CONCURRENT_WORKERS": "4",
        "SWARMD_LOG_LEVEL": "info",
    }


def start_fleet(tmp_path: Path, url: str, count: int = 3, *, start: bool = True) -> list[Daemon]:
    shared = tmp_path / "shared"
    (shared / "work").mkdir(parents=True)
    (shared / "outputs").mkdir()
    daemons = []
    for number in range(count):
        home = tmp_path / f"host{number}"
        daemon = Daemon(fleet_env(home, url, shared), home, stderr_to_file=True)
        daemons.append(daemon.start() if start else daemon)
    return daemons


def rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [tuple(row) for row in conn.execute(sql, params).fetchall()]


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def running_on(url: str, daemon: Daemon) -> bool:
    """Whether ``daemon`` holds an open attempt."""
    sql = "SELECT COUNT(*) FROM attempts WHERE ended_at IS NULL AND lease_home = %s"
    return bool(rows(url, sql, str(daemon.home))[0][0])


def ticket_state(url: str, ticket_id: int) -> str:
    return str(rows(url, "SELECT state FROM tickets WHERE id = %s", ticket_id)[0][0])


def submit(daemon: Daemon, tmp_path: Path, tasks: list[dict[str, Any]]) -> int:
    path = write_ticket(tmp_path, {"title": "fleet", "agent": "command", "tasks": tasks})
    result = swarmd("submit", str(path), "--json", env=daemon.env)
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["ticket"])


def layered_dag(count: int, width: int, command: list[str]) -> list[dict[str, Any]]:
    """``count`` tasks in layers of ``width``; each needs the task ``width`` before it."""
    return [
        {
            "name": f"t{i}",
            "command": command,
            **({"needs": [f"t{i - width}"]} if i >= width else {}),
        }
        for i in range(count)
    ]


def stop_all(daemons: list[Daemon]) -> None:
    for daemon in daemons:
        daemon.stop()


def test_three_daemons_run_a_500_task_dag_once_each(tmp_path: Path, postgres_url: str) -> None:
    daemons = start_fleet(tmp_path, postgres_url)
    try:
        ticket_id = submit(daemons[0], tmp_path, layered_dag(500, 25, ["true"]))
        wait_until(lambda: ticket_state(postgres_url, ticket_id) == "succeeded", timeout=360)
    finally:
        stop_all(daemons)
    assert rows(postgres_url, "SELECT state, COUNT(*) FROM tasks GROUP BY state") == [
        ("succeeded", 500)
    ]
    # Every task succeeded once: one accepted completion each, and no attempt closed twice.
    completions = rows(
        postgres_url,
        "SELECT task_id, COUNT(*) FROM attempts WHERE exit_reason = 'ok' GROUP BY task_id",
    )
    assert len(completions) == 500
    assert {count for _, count in completions} == {1}
    # The work was spread over all three daemons.
    by_home = dict(
        rows(
            postgres_url,
            "SELECT lease_home, COUNT(*) FROM attempts WHERE exit_reason = 'ok' "
            "GROUP BY lease_home",
        )
    )
    assert set(by_home) == {str(daemon.home) for daemon in daemons}, by_home
    assert all(count >= 20 for count in by_home.values()), by_home


def test_a_killed_daemons_tasks_run_again_elsewhere_within_the_lease(
    tmp_path: Path, postgres_url: str
) -> None:
    daemons = start_fleet(tmp_path, postgres_url, count=2)
    victim, survivor = daemons
    try:
        # Long tasks, claimed by both daemons; the victim's must move to the survivor.
        ticket_id = submit(
            victim, tmp_path, layered_dag(8, 8, python_command("import time; time.sleep(8)"))
        )
        wait_until(lambda: running_on(postgres_url, victim), timeout=60)
        tree = psutil.Process(victim.pid).children(recursive=True)
        assert tree, "the victim runs no fork server and no worker"
        killed_at = time.time()
        victim.signal(signal.SIGKILL)
        victim.wait()
        # Its fork server and workers die with it (long before their 8 s tasks could end):
        # nothing of the dead daemon survives.
        wait_until(lambda: not [p for p in tree if alive(p)], timeout=4)
        wait_until(lambda: ticket_state(postgres_url, ticket_id) == "succeeded", timeout=120)
    finally:
        stop_all(daemons)
    reaped = rows(
        postgres_url,
        "SELECT t.name, a.ended_at FROM attempts AS a JOIN tasks AS t ON t.id = a.task_id "
        "WHERE a.error LIKE 'its lease expired%%'",
    )
    assert reaped, "no attempt of the killed daemon was reaped"
    for name, ended_at in reaped:
        # Taken back within the lease and a renewal or two, far inside the 40 s target.
        assert ended_at - killed_at < LEASE_SECONDS + 6, (name, ended_at - killed_at)
        rerun = rows(
            postgres_url,
            "SELECT a.lease_home, a.exit_reason FROM attempts AS a JOIN tasks AS t "
            "ON t.id = a.task_id WHERE t.name = %s AND a.ended_at > %s",
            name,
            ended_at - 0.001,
        )
        assert (str(survivor.home), "ok") in rerun, rerun
    completions = rows(
        postgres_url,
        "SELECT task_id, COUNT(*) FROM attempts WHERE exit_reason = 'ok' GROUP BY task_id",
    )
    assert len(completions) == 8 and {count for _, count in completions} == {1}


# On the daemon to be stopped (host0), even tasks outlast the stop and odd ones end during
# it; anywhere else every task takes a second.
UNEVEN_SLEEP = (
    "import sys, time; workspace = sys.argv[1]; n = int(workspace.rsplit('t', 1)[1]); "
    "time.sleep((30 if n % 2 == 0 else 2) if '/host0/' in workspace else 1)"
)


def test_a_daemon_stopped_past_its_lease_fences_itself_and_its_results_are_refused(
    tmp_path: Path, postgres_url: str
) -> None:
    daemons = start_fleet(tmp_path, postgres_url, count=2, start=False)
    sleeper, other = daemons
    try:
        # The sleeper alone claims the first four tasks (its four workers: t0 to t3, both
        # kinds), then the other daemon starts and takes the rest.
        sleeper.start()
        command = [*python_command(UNEVEN_SLEEP), "{workspace}"]
        ticket_id = submit(sleeper, tmp_path, layered_dag(8, 8, command))
        wait_until(
            lambda: (
                rows(
                    postgres_url,
                    "SELECT COUNT(*) FROM attempts WHERE ended_at IS NULL AND lease_home = %s",
                    str(sleeper.home),
                )[0][0]
                == 4
            ),
            timeout=60,
        )
        other.start()
        sleeper.signal(signal.SIGSTOP)
        # Past its lease: the other daemon reaps and reruns the stopped daemon's tasks.
        wait_until(lambda: ticket_state(postgres_url, ticket_id) == "succeeded", timeout=120)
        sleeper.signal(signal.SIGCONT)
        log_path = sleeper.home / "logs" / "swarmd.jsonl"
        wait_until(lambda: "self-fencing" in log_path.read_text(), timeout=20)
        time.sleep(1)
    finally:
        stop_all(daemons)
    completions = rows(
        postgres_url,
        "SELECT task_id, COUNT(*) FROM attempts WHERE exit_reason = 'ok' GROUP BY task_id",
    )
    assert len(completions) == 8 and {count for _, count in completions} == {1}
    events = [json.loads(line) for line in log_path.read_text().splitlines()]
    fenced = {e["task"] for e in events if "self-fencing" in str(e.get("detail"))}
    refused = {e["task"] for e in events if e["event"] == "attempt_result_refused"}
    # On waking, it killed the workers still running before reporting anything...
    assert fenced, "no worker was killed by self-fencing"
    # ...and every attempt of its own, ended or killed, was refused: others reran them.
    started = {e["task"] for e in events if e["event"] == "worker_started"}
    assert refused == started, (refused, started)


def test_a_restarted_server_loses_nothing(
    tmp_path: Path, postgres: PostgresServer, postgres_url: str
) -> None:
    daemons = start_fleet(tmp_path, postgres_url, count=2)
    try:
        sleep = python_command("import time; time.sleep(0.3)")
        ticket_id = submit(daemons[0], tmp_path, layered_dag(60, 6, sleep))
        wait_until(
            lambda: (
                rows(postgres_url, "SELECT COUNT(*) FROM tasks WHERE state = 'succeeded'")[0][0]
                >= 12
            ),
            timeout=120,
        )
        postgres.restart()  # pg_ctl restart -m fast: every connection is cut
        wait_until(lambda: ticket_state(postgres_url, ticket_id) == "succeeded", timeout=180)
        assert all(daemon.proc is not None and daemon.proc.poll() is None for daemon in daemons)
    finally:
        stop_all(daemons)
    completions = rows(
        postgres_url,
        "SELECT task_id, COUNT(*) FROM attempts WHERE exit_reason = 'ok' GROUP BY task_id",
    )
    assert len(completions) == 60 and {count for _, count in completions} == {1}
    for daemon in daemons:
        log = (daemon.home / "logs" / "swarmd.jsonl").read_text()
        assert "listen_connection_lost" in log  # it noticed, and listened again
