"""The metrics text: the Prometheus parser reads it, and it says what the store holds."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from swarmd.daemon.metrics.collector import DURATION_BUCKETS, GateHoldCounter, MetricsCollector
from swarmd.daemon.metrics.exporter import MetricsExporter, write_atomically
from swarmd.models import ExitReason
from swarmd.store import Store
from swarmd.store.stats import StoreStats
from tests.support.attempts import run_attempt
from tests.support.clock import FakeClock

TRIES_RESULT = {
    "model": "openai/a",
    "tries": [
        {"model": 'odd"model\\x\n', "outcome": "server_error"},
        {"model": "openai/a", "outcome": "ok"},
    ],
    "usage": {"prompt_tokens": 7, "completion_tokens": 3},
    "cost_usd": 0.25,
}


def samples(text: str) -> dict[str, list[Sample]]:
    """Samples by family name, as Prometheus' own parser reads them."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(found: dict[str, list[Sample]], family: str, **labels: str) -> float:
    name_matches = [
        s for s in found[family] if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(name_matches) == 1, (family, labels, found[family])
    return name_matches[0].value


async def collect(store: Store, clock: FakeClock, holds: GateHoldCounter | None = None) -> str:
    stats = StoreStats(store.database, clock=clock)
    collector = MetricsCollector(store, stats, gate_holds=holds, clock=clock)
    return await collector.collect()


async def test_counters_sum_the_closed_attempts_of_the_store(
    store: Store, clock: FakeClock
) -> None:
    await run_attempt(store, clock, 0.2, name="a", result=TRIES_RESULT)
    await run_attempt(store, clock, 7.0, name="b", reason=ExitReason.HUNG)
    await run_attempt(store, clock, 45.0, name="c", reason=ExitReason.ERROR, result=TRIES_RESULT)

    found = samples(await collect(store, clock))

    assert value(found, "swarmd_attempts", exit_reason="ok") == 1
    assert value(found, "swarmd_attempts", exit_reason="hung") == 1
    assert value(found, "swarmd_attempts", exit_reason="error") == 1
    assert value(found, "swarmd_attempts", exit_reason="timeout") == 0
    assert value(found, "swarmd_llm_requests", model="openai/a", outcome="ok") == 2
    assert value(found, "swarmd_llm_requests", model='odd"model\\x\n', outcome="server_error") == 2
    assert value(found, "swarmd_llm_tokens", model="openai/a", kind="prompt") == 14
    assert value(found, "swarmd_llm_tokens", model="openai/a", kind="completion") == 6
    assert value(found, "swarmd_llm_cost_usd", model="openai/a") == 0.5


async def test_duration_histogram_buckets_are_cumulative(store: Store, clock: FakeClock) -> None:
    for i, seconds in enumerate([0.2, 7.0, 45.0, 5000.0]):
        await run_attempt(store, clock, seconds, name=f"t{i}")

    found = samples(await collect(store, clock))

    buckets = {
        s.labels["le"]: s.value
        for s in found["swarmd_attempt_duration_seconds"]
        if s.name.endswith("_bucket")
    }
    assert buckets["0.5"] == 1
    assert buckets["10.0"] == 2
    assert buckets["60.0"] == 3
    assert buckets["3600.0"] == 3
    assert buckets["+Inf"] == 4
    assert len(buckets) == len(DURATION_BUCKETS) + 1
    assert value(found, "swarmd_attempt_duration_seconds", le="+Inf") == 4
    total = [s for s in found["swarmd_attempt_duration_seconds"] if s.name.endswith("_sum")]
    assert total[0].value == pytest.approx(0.2 + 7.0 + 45.0 + 5000.0)


async def test_each_attempt_is_counted_once_across_collections(
    store: Store, clock: FakeClock
) -> None:
    collector = MetricsCollector(store, StoreStats(store.database, clock=clock))
    await run_attempt(store, clock, 1.0, name="a")
    await collector.collect()
    await collector.collect()
    await run_attempt(store, clock, 1.0, name="b")

    found = samples(await collector.collect())

    assert value(found, "swarmd_attempts", exit_reason="ok") == 2


async def test_queue_depth_gauge_has_every_state(store: Store, clock: FakeClock) -> None:
    await run_attempt(store, clock, 1.0, name="done")
    await run_attempt(store, clock, 1.0, name="broken", reason=ExitReason.ERROR)

    found = samples(await collect(store, clock))

    assert value(found, "swarmd_tasks", state="succeeded") == 1
    assert value(found, "swarmd_tasks", state="dead") == 1
    assert value(found, "swarmd_tasks", state="ready") == 0
    assert len(found["swarmd_tasks"]) == 8


async def test_gate_holds_and_the_heartbeat_are_exposed(store: Store, clock: FakeClock) -> None:
    holds = GateHoldCounter()
    holds.record("memory")
    holds.record("memory")
    status = {
        "workers": [{"rss_bytes": 1000}, {"rss_bytes": 24}],
        "gate": {"allowed": False, "reason": "memory"},
        "models": {"openai/a": {"cooling_until": clock() + 30}, "openai/b": {}},
    }
    await store.write_heartbeat(pid=1, started_at=clock() - 10, version="x", status=status)

    found = samples(await collect(store, clock, holds))

    assert value(found, "swarmd_gate_holds", limit="memory") == 2
    assert value(found, "swarmd_gate_holds", limit="load") == 0
    assert value(found, "swarmd_gate_open") == 0
    assert value(found, "swarmd_workers_running") == 2
    assert value(found, "swarmd_workers_rss_bytes") == 1024
    assert value(found, "swarmd_llm_model_cooling", model="openai/a") == 1
    assert value(found, "swarmd_llm_model_cooling", model="openai/b") == 0
    assert value(found, "swarmd_daemon_heartbeat_timestamp_seconds") == clock()
    assert value(found, "swarmd_daemon_start_time_seconds") == clock() - 10


async def test_endpoint_serves_the_text_written_to_the_textfile(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    await run_attempt(store, clock, 1.0)
    textfile = tmp_path / "swarmd.prom"
    exporter = MetricsExporter(
        MetricsCollector(store, StoreStats(store.database, clock=clock)), textfile=textfile, port=0
    )
    await exporter.start()
    try:
        assert exporter.address is not None
        host, port = exporter.address
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            response = await client.get("/metrics")
            head = await client.head("/metrics")
            missing = await client.get("/other")
            posted = await client.post("/metrics")
    finally:
        await exporter.close()

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.text == textfile.read_text() == exporter.text
    assert "swarmd_attempts_total" in response.text
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(response.content)
    assert missing.status_code == 404
    assert posted.status_code == 405


async def test_refresh_replaces_the_textfile_with_new_counts(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    textfile = tmp_path / "swarmd.prom"
    exporter = MetricsExporter(
        MetricsCollector(store, StoreStats(store.database, clock=clock)), textfile=textfile
    )
    await exporter.start()
    before = value(samples(textfile.read_text()), "swarmd_attempts", exit_reason="ok")
    await run_attempt(store, clock, 1.0)
    await exporter.refresh()

    after = value(samples(textfile.read_text()), "swarmd_attempts", exit_reason="ok")

    assert (before, after) == (0, 1)
    assert stat.S_IMODE(textfile.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "swarmd.prom"]


async def test_exporter_run_refreshes_on_its_interval_until_cancelled(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    textfile = tmp_path / "swarmd.prom"
    exporter = MetricsExporter(
        MetricsCollector(store, StoreStats(store.database, clock=clock)),
        textfile=textfile,
        interval=0.01,
    )
    await exporter.start()
    await run_attempt(store, clock, 1.0)
    refreshed = asyncio.Event()
    real_refresh = exporter.refresh

    async def refresh_and_tell() -> None:
        await real_refresh()
        refreshed.set()

    exporter.refresh = refresh_and_tell  # type: ignore[method-assign]
    runner = asyncio.create_task(exporter.run(), name="metrics-exporter")
    try:
        async with asyncio.timeout(10):
            await refreshed.wait()
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    assert 'swarmd_attempts_total{exit_reason="ok"} 1' in textfile.read_text()
    assert runner.cancelled()


def test_textfile_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "swarmd.prom"
    texts = ["a" * 200_000 + "\n", "b" * 100_000 + "\n"]
    write_atomically(path, texts[0])
    stop = threading.Event()
    torn: list[int] = []

    def read_continuously() -> None:
        while not stop.is_set():
            text = path.read_text()
            if text not in texts:
                torn.append(len(text))

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        for i in range(100):
            write_atomically(path, texts[i % 2])
    finally:
        stop.set()
        reader.join()

    assert torn == []
    assert os.listdir(tmp_path) == ["swarmd.prom"]


async def test_port_in_use_fails_the_start_with_one_sentence(
    store: Store, clock: FakeClock
) -> None:
    first = MetricsExporter(
        MetricsCollector(store, StoreStats(store.database, clock=clock)), port=0
    )
    await first.start()
    try:
        assert first.address is not None
        second = MetricsExporter(
            MetricsCollector(store, StoreStats(store.database, clock=clock)), port=first.address[1]
        )
        try:
            await second.start()
        except Exception as exc:
            error = exc
        else:
            raise AssertionError("a second exporter bound the same port")
    finally:
        await first.close()

    assert "cannot serve metrics on 127.0.0.1" in str(error)
    assert "SWARMD_METRICS_PORT" in str(error)
