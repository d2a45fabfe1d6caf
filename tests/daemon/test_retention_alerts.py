"""Retention tells a person: a daily pass that freed space, failed, or could not remove a
path is alerted (``retention_pruned``, ``retention_failed``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from swarmd.daemon.alerts import Alerter, AlertWatch, size
from swarmd.daemon.retention import (
    DAY_SECONDS,
    PruneReport,
    Removal,
    alert_report,
    run_retention,
)
from swarmd.home import HomeLayout
from swarmd.store import Store
from tests.daemon.test_retention import finished_ticket, pruner
from tests.support.clock import FakeClock
from tests.support.recording_sink import RecordingSink


@pytest.fixture
def layout(store: Store) -> HomeLayout:
    return HomeLayout(Path(store.name).parent)


def watch(store: Store, sink: RecordingSink) -> AlertWatch:
    return AlertWatch(Alerter([sink]), store, model_chain=(), gate_held_seconds=600)


def one_pass() -> Callable[[float], object]:
    """A sleep for ``run_retention`` that lets exactly one pass run."""
    calls = 0

    async def sleep(seconds: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise asyncio.CancelledError
        await asyncio.sleep(0)

    return sleep


async def test_a_pass_that_freed_space_is_alerted_with_how_much(
    store: Store, layout: HomeLayout, clock: FakeClock
) -> None:
    sink = RecordingSink()
    alerts = watch(store, sink)
    await finished_ticket(store, layout)
    clock.advance(8 * DAY_SECONDS)  # past the workspaces' 7 days

    with pytest.raises(asyncio.CancelledError):
        await run_retention(pruner(store, layout, clock), alerts=alerts, sleep=one_pass())
    await alerts.alerter.deliver_queued()

    [payload] = sink.payloads
    assert payload["event"] == "retention_pruned"
    assert payload["freed_bytes"] > 0 and payload["removed"] >= 1
    assert "retention freed " in payload["text"]


async def test_a_pass_with_nothing_due_sends_nothing(
    store: Store, layout: HomeLayout, clock: FakeClock
) -> None:
    sink = RecordingSink()
    alerts = watch(store, sink)
    await finished_ticket(store, layout)

    with pytest.raises(asyncio.CancelledError):
        await run_retention(pruner(store, layout, clock), alerts=alerts, sleep=one_pass())
    await alerts.alerter.deliver_queued()

    assert sink.payloads == []


async def test_a_pass_that_failed_is_alerted_with_its_error(
    tmp_path: Path, clock: FakeClock
) -> None:
    sink = RecordingSink()
    store = await Store.open(tmp_path / "home" / "swarmd.db")
    alerts = watch(store, sink)
    failing = pruner(store, HomeLayout(tmp_path / "home"), clock)
    await store.close()  # every read of the pass now fails

    with pytest.raises(asyncio.CancelledError):
        await run_retention(failing, alerts=alerts, sleep=one_pass())
    await alerts.alerter.deliver_queued()

    [payload] = sink.payloads
    assert payload["event"] == "retention_failed"
    assert "already closed" in payload["error"]
    assert payload["text"].endswith("it tries again in a day")


async def test_paths_that_could_not_be_removed_are_alerted_by_name(store: Store) -> None:
    sink = RecordingSink()
    alerts = watch(store, sink)
    report = PruneReport(
        dry_run=False,
        removals=[
            Removal(1, "workspaces", Path("/srv/swarmd/work/1"), 4096),
            Removal(2, "workspaces", Path("/srv/swarmd/work/2"), 4096, "Permission denied"),
        ],
    )

    alert_report(alerts, report)
    await alerts.alerter.deliver_queued()

    assert [p["event"] for p in sink.payloads] == ["retention_pruned", "retention_failed"]
    failed = sink.payloads[1]
    assert failed["not_removed"] == [{"path": "/srv/swarmd/work/2", "error": "Permission denied"}]
    assert failed["text"].endswith(
        "retention could not remove 1 path: /srv/swarmd/work/2 (Permission denied)"
    )


def test_sizes_read_as_a_person_reads_them() -> None:
    assert [size(n) for n in (512, 4096, 3 * 2**20 + 2**19, 5 * 2**40)] == [
        "512 B",
        "4.0 KiB",
        "3.5 MiB",
        "5120.0 GiB",
    ]
