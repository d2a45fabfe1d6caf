"""The spawn gate inside a real supervisor: held spawns wait, then run once the host recovers.

The supervisor is wired as ``swarmd.daemon.serve`` wires it (real store on a file, real launcher,
real worker processes), except that the gate reads a fake probe the test turns up and down.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from swarmd.agents.registry import AgentRegistry
from swarmd.daemon.gate import GateDecision, GateHold, SpawnGate
from swarmd.daemon.supervisor import Supervisor, SupervisorConfig
from swarmd.home import HomeLayout
from swarmd.models import TaskSpec, TaskState, TicketSpec, TicketState
from swarmd.spawn.launcher import LaunchSettings, WorkerLauncher
from swarmd.store import Store
from swarmd.wire.job import LLMSettings
from tests.support.cli import PROVIDER_VARIABLES

MB = 1024 * 1024
MIN_FREE_MEMORY_MB = 1024
MAX_LOAD = 2.0
TASKS = 3


class FakeProbe:
    """A ``ResourceProbe`` whose readings the test sets; it counts how often it is read."""

    def __init__(self) -> None:
        self.memory_bytes = 8 * 1024 * MB
        self.load = 0.1
        self.reads = 0

    def available_memory_bytes(self) -> int:
        self.reads += 1
        return self.memory_bytes

    def load_1m(self) -> float:
        return self.load


@dataclass
class RecordingHooks:
    """``SupervisorHooks`` that remember what the supervisor told them."""

    snapshots: list[dict[str, Any]] = field(default_factory=list)
    finished: dict[int, TicketState] = field(default_factory=dict)
    holds: list[GateDecision] = field(default_factory=list)
    is_ready: bool = False

    def ready(self) -> None:
        self.is_ready = True

    def stopping(self) -> None:
        pass

    def gate_held(self, decision: GateDecision) -> None:
        self.holds.append(decision)

    async def heartbeat(self, snapshot: dict[str, Any]) -> None:
        self.snapshots.append(snapshot)

    async def ticket_finished(self, ticket_id: int, state: TicketState) -> None:
        self.finished[ticket_id] = state


async def refuse_calls(method: str, args: dict[str, Any]) -> Any:
    raise RuntimeError(f"no broker in this test ({method})")


@dataclass
class Harness:
    store: Store
    probe: FakeProbe
    hooks: RecordingHooks
    logs: list[MutableMapping[str, Any]]
    supervisor: asyncio.Task[None]

    def events(self, name: str) -> list[MutableMapping[str, Any]]:
        return [entry for entry in self.logs if entry["event"] == name]

    async def wait_for(self, condition: Callable[[], bool], *, timeout: float = 30.0) -> None:
        """Poll ``condition`` until it holds; fail at once if the supervisor stopped."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.supervisor.done():
                raise AssertionError(f"the supervisor stopped: {self.supervisor.exception()!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s")
            await asyncio.sleep(0.02)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """A running supervisor over a real store and real workers, gated by a fake probe."""
    home = tmp_path / "home"
    store = await Store.open(home / "swarmd.db")
    probe = FakeProbe()
    hooks = RecordingHooks()
    skip_grace = asyncio.Event()
    launcher = WorkerLauncher(
        LaunchSettings(
            layout=HomeLayout(home),
            worker_timeout_seconds=60,
            heartbeat_seconds=1,
            grace_seconds=2,
            model_chain=("echo/echo",),
            max_fix_rounds=0,
            llm=LLMSettings(),
        ),
        AgentRegistry(),
        {k: v for k, v in os.environ.items() if k not in PROVIDER_VARIABLES},
        answer_call=refuse_calls,
        skip_grace=skip_grace,
    )
    gate = SpawnGate(
        probe,
        max_workers=TASKS,
        min_free_memory_mb=MIN_FREE_MEMORY_MB,
        max_load=MAX_LOAD,
        settle_seconds=0,
    )
    stop = asyncio.Event()
    supervisor = Supervisor(
        store,
        gate,
        launcher,
        # Short recheck and heartbeat intervals keep the test quick; they change no decision.
        SupervisorConfig(
            max_workers=TASKS,
            memory_limit_bytes=None,
            hung_seconds=60,
            heartbeat_seconds=0.1,
            gate_recheck_seconds=0.05,
        ),
        stop=stop,
        hooks=hooks,
    )
    with capture_logs() as logs:
        running = asyncio.create_task(supervisor.run(), name="supervisor")
        harness = Harness(store, probe, hooks, logs, running)
        try:
            await harness.wait_for(lambda: hooks.is_ready)
            yield harness
        finally:
            stop.set()
            skip_grace.set()
            try:
                await asyncio.wait_for(running, timeout=30)
            finally:
                # A leaked connection keeps a non-daemon thread that hangs pytest's exit.
                await store.close()


HOLDS = {
    "memory": ("memory_bytes", 100 * MB, 8 * 1024 * MB, "SWARMD_MIN_FREE_MEMORY_MB=1024"),
    "load": ("load", 9.5, 0.1, "SWARMD_MAX_LOAD=2"),
}


def starve(probe: FakeProbe, resource: str) -> None:
    attribute, bad, _, _ = HOLDS[resource]
    setattr(probe, attribute, bad)


def recover(probe: FakeProbe, resource: str) -> None:
    attribute, _, good, _ = HOLDS[resource]
    setattr(probe, attribute, good)


async def submit_echo_ticket(store: Store) -> int:
    spec = TicketSpec(
        title="gated",
        agent="echo",
        tasks=tuple(TaskSpec(name=f"t{i}", prompt=f"hello {i}") for i in range(TASKS)),
    )
    return (await store.submit_ticket(spec)).ticket_id


async def hold_for_several_rechecks(harness: Harness, resource: str) -> int:
    """Starve the probe, submit a ticket, and wait until the gate said no a few times."""
    starve(harness.probe, resource)
    ticket_id = await submit_echo_ticket(harness.store)
    reads = harness.probe.reads
    await harness.wait_for(lambda: harness.probe.reads >= reads + 5)
    return ticket_id


async def task_states(store: Store, ticket_id: int) -> set[TaskState]:
    return {task.state for task in await store.list_tasks(ticket_id)}


@pytest.mark.parametrize("resource", sorted(HOLDS))
async def test_tasks_stay_ready_and_unclaimed_while_the_gate_holds(
    harness: Harness, resource: str
) -> None:
    ticket_id = await hold_for_several_rechecks(harness, resource)

    assert await task_states(harness.store, ticket_id) == {TaskState.READY}
    for task in await harness.store.list_tasks(ticket_id):
        assert await harness.store.list_attempts(task.id) == []
    assert harness.events("worker_started") == []


@pytest.mark.parametrize("resource", sorted(HOLDS))
async def test_a_hold_is_logged_once_with_the_limit_that_holds(
    harness: Harness, resource: str
) -> None:
    await hold_for_several_rechecks(harness, resource)

    held = harness.events("gate_held")
    assert len(held) == 1, held
    assert HOLDS[resource][3] in held[0]["reason"]
    assert harness.events("gate_released") == []
    assert [decision.hold for decision in harness.hooks.holds] == [GateHold(resource)]


@pytest.mark.parametrize("resource", sorted(HOLDS))
async def test_the_snapshot_for_status_shows_why_the_gate_holds(
    harness: Harness, resource: str
) -> None:
    await hold_for_several_rechecks(harness, resource)
    seen = len(harness.hooks.snapshots)
    await harness.wait_for(lambda: len(harness.hooks.snapshots) > seen)

    gate = harness.hooks.snapshots[-1]["gate"]
    assert gate["allowed"] is False
    assert HOLDS[resource][3] in gate["reason"]


@pytest.mark.parametrize("resource", sorted(HOLDS))
async def test_held_tasks_run_once_the_probe_recovers(harness: Harness, resource: str) -> None:
    ticket_id = await hold_for_several_rechecks(harness, resource)

    recover(harness.probe, resource)
    await harness.wait_for(lambda: ticket_id in harness.hooks.finished)

    assert harness.hooks.finished[ticket_id] is TicketState.SUCCEEDED
    assert await task_states(harness.store, ticket_id) == {TaskState.SUCCEEDED}
    assert len(harness.events("worker_started")) == TASKS
    names = [e["event"] for e in harness.logs if e["event"] in ("gate_held", "gate_released")]
    assert names == ["gate_held", "gate_released"]


async def test_an_open_gate_logs_no_hold(harness: Harness) -> None:
    ticket_id = await submit_echo_ticket(harness.store)
    await harness.wait_for(lambda: ticket_id in harness.hooks.finished)

    assert harness.hooks.finished[ticket_id] is TicketState.SUCCEEDED
    assert harness.events("gate_held") == []
    assert harness.events("gate_released") == []


async def test_a_hold_whose_cause_changes_is_logged_again_with_the_new_limit(
    harness: Harness,
) -> None:
    await hold_for_several_rechecks(harness, "memory")

    recover(harness.probe, "memory")
    starve(harness.probe, "load")
    reads = harness.probe.reads
    await harness.wait_for(lambda: harness.probe.reads >= reads + 5)

    reasons = [e["reason"] for e in harness.events("gate_held")]
    assert len(reasons) == 2, reasons
    assert HOLDS["load"][3] in reasons[1]
