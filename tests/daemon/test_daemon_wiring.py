"""How the daemon runs its metrics exporter and counts gate holds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from swarmd.config import load_settings
from swarmd.daemon.delivery_queue import DeliveryQueue
from swarmd.daemon.gate import GateDecision, GateHold
from swarmd.daemon.hooks import DaemonHooks
from swarmd.daemon.metrics.collector import GateHoldCounter
from swarmd.daemon.metrics.exporter import MetricsExporter
from swarmd.daemon.notify import SystemdNotifier
from swarmd.daemon.permits import PermitService
from swarmd.daemon.providers import provider_config
from swarmd.daemon.serve import metrics_exporter
from swarmd.errors import SwarmdError
from swarmd.home import HomeLayout
from swarmd.models import ExitReason
from swarmd.store import Store
from tests.support.attempts import run_attempt
from tests.support.clock import FakeClock


async def test_no_exporter_runs_without_a_metrics_setting(store: Store, tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)

    async with metrics_exporter(settings, store, GateHoldCounter(), asyncio.Event()) as exporter:
        assert exporter is None


async def test_exporter_writes_the_final_counts_as_the_block_ends(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    textfile = tmp_path / "swarmd.prom"
    settings = load_settings(home=tmp_path, metrics_textfile=textfile)

    async with metrics_exporter(settings, store, GateHoldCounter(), asyncio.Event()):
        await run_attempt(store, clock, 1.0, reason=ExitReason.MEMORY)

    assert 'swarmd_attempts_total{exit_reason="memory"} 1' in textfile.read_text()


async def test_a_failing_exporter_stops_the_daemon_and_fails_its_exit(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(self: MetricsExporter) -> None:
        raise RuntimeError("the exporter broke")

    monkeypatch.setattr(MetricsExporter, "run", explode)
    settings = load_settings(home=tmp_path, metrics_textfile=tmp_path / "swarmd.prom")
    stop = asyncio.Event()

    with pytest.raises(SwarmdError, match="the metrics exporter failed: the exporter broke"):
        async with metrics_exporter(settings, store, GateHoldCounter(), stop):
            async with asyncio.timeout(10):
                await stop.wait()


async def test_gate_closing_is_counted_by_its_limit(store: Store, tmp_path: Path) -> None:
    holds = GateHoldCounter()
    settings = load_settings(home=tmp_path)
    hooks = DaemonHooks(
        store,
        SystemdNotifier(None),
        PermitService(
            settings.api_rate_limit_rpm, limit_key=provider_config(settings).provider_name
        ),
        DeliveryQueue(store, HomeLayout(tmp_path)),
        holds,
    )

    hooks.gate_held(GateDecision(False, "low memory", GateHold.MEMORY))
    hooks.gate_held(GateDecision(False, "busy host", GateHold.LOAD))
    hooks.gate_held(GateDecision(False, "low memory", GateHold.MEMORY))

    assert holds.counts() == {"slots": 0, "memory": 2, "load": 1}
