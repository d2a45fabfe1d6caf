"""One rate limit for a whole fleet: three daemons' requests together stay under the RPM.

Each daemon alone would allow the full rate; only the shared bucket in PostgreSQL keeps the
three together under it. Each task makes four requests (three HTTP 500s with
``Retry-After: 0``, then an answer), each behind its own permit, so the provider sees many
requests per worker process and the machine can outrun the limit.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.cli.test_rate_limit import most_in_any_window
from tests.support.cli import Daemon, swarmd, wait_until, write_ticket
from tests.support.fake_llm import FakeLLMServer, Fault
from tests.support.llm_env import llm_ticket

RPM = 300  # five a second for the fleet; three daemons alone would allow fifteen
REQUESTS_PER_TASK = 4
TASKS = 45
STEADY_SKIP = 15


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_three_daemons_together_stay_under_one_rpm(
    tmp_path: Path, llm_env: dict[str, str], fake_llm: FakeLLMServer, postgres_url: str
) -> None:
    daemons = []
    for number in range(3):
        home = tmp_path / f"host{number}"
        home.mkdir()
        env = {
            **llm_env,
            "SWARMD_HOME": str(home),
            "SWARMD_DATABASE_URL": postgres_url,
            "SWARMD_API_RATE_LIMIT_RPM": str(RPM),
            "SWARMD_MAX_CONCURRENT_WORKERS": "5",
            "SWARMD_LOG_LEVEL": "info",
        }
        daemons.append(Daemon(env, home, stderr_to_file=True))
    ticket = llm_ticket(*(f"t{i:03d}" for i in range(TASKS)))
    for task in ticket["tasks"]:
        task["model"] = [f"openai/{task['name']}"]
        fake_llm.script(task["name"], *[Fault.http(500, retry_after=0)] * (REQUESTS_PER_TASK - 1))
    try:
        for daemon in daemons:
            daemon.start()
        path = write_ticket(tmp_path, ticket)
        submitted = swarmd("submit", str(path), "--json", env=daemons[0].env)
        assert submitted.returncode == 0, submitted.stderr
        ticket_id = json.loads(submitted.stdout)["ticket"]

        def finished() -> bool:
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                row = conn.execute("SELECT state FROM tickets WHERE id = %s", (ticket_id,))
                return row.fetchone() == ("succeeded",)

        wait_until(finished, timeout=200, interval=0.5)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            homes = conn.execute(
                "SELECT COUNT(DISTINCT lease_home) FROM attempts WHERE exit_reason = 'ok'"
            ).fetchone()
    finally:
        for daemon in daemons:
            daemon.stop()
    assert homes == (3,)  # all three daemons made requests
    arrivals = sorted(r.monotonic for r in fake_llm.requests())
    assert len(arrivals) == TASKS * REQUESTS_PER_TASK
    assert most_in_any_window(arrivals, 60.0) <= RPM
    # 300 rpm is one request every 0.2 s: a 6 s window holds 30, plus the burst of one,
    # plus one for the jitter between a permit and its request reaching the server.
    assert most_in_any_window(arrivals, 6.0) <= RPM // 10 + 2
    steady = arrivals[STEADY_SKIP:-STEADY_SKIP]
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    assert 4.0 <= rate <= 5.5, f"{rate:.2f} requests per second"
