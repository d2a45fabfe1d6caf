"""The dashboard's snapshot from a real store: the graph's columns, the live part carried
forward, big tickets cut short, and every secret scrubbed."""

from __future__ import annotations

import json

from swarmd.daemon.dashboard.snapshot import (
    TASKS_SHOWN,
    DaemonFacts,
    LiveStatus,
    SnapshotBuilder,
    percentile,
)
from swarmd.logs import Redactor
from swarmd.store import Store
from tests.support.builders import chain, diamond, task, ticket
from tests.support.clock import FakeClock

SECRET = "hunter2-Kq9Vx7Lm3Pz"


def builder(store: Store, live: LiveStatus, clock: FakeClock) -> SnapshotBuilder:
    facts = DaemonFacts(
        pid=1, started_at=clock(), home="/srv/swarmd", max_workers=4, model_chain=("echo/echo",)
    )
    return SnapshotBuilder(store, live, facts, redactor=Redactor([SECRET]), clock=clock)


async def test_each_task_sits_one_column_past_its_deepest_need(
    store: Store, clock: FakeClock
) -> None:
    await store.submit_ticket(diamond())

    snapshot = await builder(store, LiveStatus(clock), clock).build()

    graph = {t["name"]: t["depth"] for t in snapshot["tickets"][0]["tasks"]}
    assert graph == {"top": 0, "left": 1, "right": 1, "bottom": 2}
    assert snapshot["queue"]["ready"] == 1 and snapshot["queue"]["blocked"] == 3


async def test_workers_ages_run_on_from_the_last_heartbeat(store: Store, clock: FakeClock) -> None:
    live = LiveStatus(clock)
    worker = {"task": "1.a", "attempt": 1, "agent": "echo", "pid": 42, "age_s": 10.0}
    live.publish({"workers": [{**worker, "rss_bytes": 2**20, "heartbeat_age_s": 0.5}]})
    clock.advance(1.5)

    snapshot = await builder(store, live, clock).build()

    assert snapshot["workers"][0]["age_s"] == 11.5
    assert snapshot["daemon"]["heartbeat_age_s"] == 1.5
    assert snapshot["gate"] == {"allowed": True, "reason": None, "running": 1, "max_workers": 4}


async def test_a_held_gate_says_why(store: Store, clock: FakeClock) -> None:
    live = LiveStatus(clock)
    live.publish({"workers": [], "gate": {"allowed": False, "reason": "load 9.1 is above 3.0"}})

    snapshot = await builder(store, live, clock).build()

    assert snapshot["gate"]["allowed"] is False
    assert snapshot["gate"]["reason"] == "load 9.1 is above 3.0"


async def test_a_big_ticket_shows_its_first_tasks_and_counts_them_all(
    store: Store, clock: FakeClock
) -> None:
    await store.submit_ticket(chain(TASKS_SHOWN + 50))

    shown = (await builder(store, LiveStatus(clock), clock).build())["tickets"][0]

    assert len(shown["tasks"]) == TASKS_SHOWN
    assert shown["tasks_total"] == TASKS_SHOWN + 50


async def test_no_secret_reaches_the_snapshot(store: Store, clock: FakeClock) -> None:
    await store.submit_ticket(ticket(task("a", prompt=f"use {SECRET}"), title=f"with {SECRET}"))
    live = LiveStatus(clock)
    cooling = {"cooling_until": clock() + 60, "last_error": f"HTTP 401 for key {SECRET}"}
    live.publish({"workers": [], "models": {"openai/gpt-x": cooling}})

    snapshot = await builder(store, live, clock).build()

    text = json.dumps(snapshot)
    assert SECRET not in text
    assert snapshot["tickets"][0]["title"] == "with [REDACTED]"
    assert "prompt" not in snapshot["tickets"][0]["tasks"][0]  # never shown at all
    model = next(m for m in snapshot["models"] if m["model"] == "openai/gpt-x")
    assert (model["health"], model["last_error"]) == ("cooling", "HTTP 401 for key [REDACTED]")


def test_percentiles_are_values_that_were_measured() -> None:
    values = [0.1, 0.2, 0.3, 0.4, 10.0]

    assert (percentile(values, 0.5), percentile(values, 0.95)) == (0.3, 10.0)
    assert percentile([], 0.5) is None
