"""The global rate limit, as the provider sees it: ten workers together stay under the RPM.

A backlog of 330 requests, about 33 s of it at the limit, runs through ``swarmd run-ticket
--wait`` with ``SWARMD_API_RATE_LIMIT_RPM=600`` and ten workers; the fake provider records when
each request arrived.

Each task makes three requests (two HTTP 500s with ``Retry-After: 0``, then an answer), each
behind its own permit: a one-request task costs a whole worker process, about 0.28 s of CPU,
so on a two-core machine one-request tasks cannot reach 10 per second and the test would
measure the host instead of the limiter. Each task asks its own model, so no model's failures
cool it down for the others.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fake_llm import FakeLLMServer, Fault
from tests.support.llm_env import llm_ticket, run_ticket

RPM = 600
REQUESTS_PER_TASK = 3
TASKS = 110
STEADY_SKIP = 20  # requests left out at each end: the ramp-up and the drain


def most_in_any_window(times: list[float], window: float) -> int:
    """The largest number of ``times`` inside any half-open window ``[t, t + window)``."""
    ordered = sorted(times)
    most = start = 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - window:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_most_in_any_window_counts_the_fullest_window() -> None:
    assert most_in_any_window([0.0, 0.5, 0.99, 1.0, 1.5, 3.0], 1.0) == 3
    assert most_in_any_window([0.0, 1.0, 2.0], 1.0) == 1


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ten_workers_together_stay_under_the_global_rpm(
    tmp_path: Path, llm_env: dict[str, str], fake_llm: FakeLLMServer
) -> None:
    env = {
        **llm_env,
        "SWARMD_API_RATE_LIMIT_RPM": str(RPM),
        "SWARMD_MAX_CONCURRENT_WORKERS": "10",
    }
    ticket = llm_ticket(*(f"t{i:03d}" for i in range(TASKS)))
    for task in ticket["tasks"]:
        task["model"] = [f"openai/{task['name']}"]
        failures = [Fault.http(500, retry_after=0)] * (REQUESTS_PER_TASK - 1)
        fake_llm.script(task["name"], *failures)

    result = run_ticket(tmp_path, env, ticket, timeout=110)

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    arrivals = sorted(r.monotonic for r in fake_llm.requests())
    assert set(fake_llm.counts().values()) == {REQUESTS_PER_TASK}
    assert len(arrivals) == TASKS * REQUESTS_PER_TASK
    assert most_in_any_window(arrivals, 60.0) <= RPM
    # 600 rpm is one request every 0.1 s: a 6 s window holds 60, plus the burst of one,
    # plus one for the jitter between a permit and its request reaching the server.
    assert most_in_any_window(arrivals, 6.0) <= RPM // 10 + 2
    steady = arrivals[STEADY_SKIP:-STEADY_SKIP]
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    assert 9.0 <= rate <= 11.0, f"{rate:.2f} requests per second"
