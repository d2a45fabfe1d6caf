"""Retention on real files and a real store, the clock in the test's hand: exactly what is
due goes, and nothing of an unfinished or undelivered ticket, nor any worktree."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from swarmd.daemon.retention import (
    DAY_SECONDS,
    Pruner,
    RetentionPolicy,
    run_retention,
)
from swarmd.home import HomeLayout
from swarmd.models import ExitReason, TicketState
from swarmd.store import Store
from tests.support.builders import claim, task, ticket
from tests.support.clock import FakeClock

POLICY = RetentionPolicy(
    workspaces=7 * DAY_SECONDS,
    attempt_logs=30 * DAY_SECONDS,
    archives=30 * DAY_SECONDS,
    deliveries=90 * DAY_SECONDS,
    tickets=365 * DAY_SECONDS,
)


@pytest.fixture
def layout(store: Store) -> HomeLayout:
    return HomeLayout(Path(store.name).parent)


def write_files(layout: HomeLayout, ticket_id: int, task: str = "a") -> list[Path]:
    """A ticket's files as the daemon leaves them: workspace, attempt log, archives."""
    workspace = layout.workspace(ticket_id, task)
    (workspace / "site").mkdir(parents=True)
    (workspace / "site" / "index.html").write_text("<p>hi</p>" * 100)
    log = layout.attempt_log(ticket_id, task, 1)
    log.parent.mkdir(parents=True)
    log.write_text("worker output\n")
    archive = layout.task_archive(ticket_id, task)
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"\x1f\x8b" + b"0" * 5000)
    layout.delivery_archive(ticket_id).write_bytes(b"\x1f\x8b" + b"1" * 5000)
    return [workspace, log, archive, layout.delivery_archive(ticket_id)]


async def finished_ticket(store: Store, layout: HomeLayout, *, delivered: bool = True) -> int:
    submitted = await store.submit_ticket(ticket("a"))
    claimed = await claim(store)
    await store.complete_attempt(claimed.attempt.token)
    if delivered:
        assert await store.mark_delivered(submitted.ticket_id, TicketState.SUCCEEDED)
    write_files(layout, submitted.ticket_id)
    return submitted.ticket_id


def pruner(store: Store, layout: HomeLayout, clock: FakeClock, **limits: float | None) -> Pruner:
    policy = RetentionPolicy(**{**POLICY_FIELDS, **limits})
    return Pruner(store, layout, policy, clock=clock)


POLICY_FIELDS: dict[str, float | None] = {
    "workspaces": POLICY.workspaces,
    "attempt_logs": POLICY.attempt_logs,
    "archives": POLICY.archives,
    "deliveries": POLICY.deliveries,
    "tickets": POLICY.tickets,
}


def removed_paths(report: object) -> set[Path]:
    return {removal.path for removal in report.removals}  # type: ignore[attr-defined]


async def test_each_kind_goes_when_its_own_limit_passes_and_not_before(
    store: Store, layout: HomeLayout, clock: FakeClock
) -> None:
    ticket_id = await finished_ticket(store, layout)
    prune = pruner(store, layout, clock)

    clock.advance(7 * DAY_SECONDS - 1)
    assert (await prune.prune()).removals == []

    clock.advance(1)
    report = await prune.prune()
    assert removed_paths(report) == {layout.ticket_workspaces(ticket_id)}
    assert not layout.ticket_workspaces(ticket_id).exists()
    assert layout.attempt_log(ticket_id, "a", 1).exists()
    assert report.freed_bytes > 0

    clock.advance(23 * DAY_SECONDS)
    report = await prune.prune()
    assert removed_paths(report) == {
        layout.ticket_attempt_logs(ticket_id),
        layout.task_archive(ticket_id, "a"),
    }
    assert layout.delivery_archive(ticket_id).exists()
    pruned = await store.pruned_files(ticket_id)
    assert pruned is not None
    assert set(pruned.kinds) == {"workspaces", "attempt_logs", "archives"}

    clock.advance(60 * DAY_SECONDS)
    report = await prune.prune()
    assert removed_paths(report) == {layout.delivery_archive(ticket_id)}
    assert not layout.ticket_outputs(ticket_id).exists()  # the emptied folder goes too
    assert (await store.get_ticket(ticket_id)).state is TicketState.SUCCEEDED  # row kept

    clock.advance(275 * DAY_SECONDS)
    report = await prune.prune()
    assert report.tickets_removed == [ticket_id]
    assert await store.list_tickets(limit=10) == []
    with sqlite3.connect(store.name) as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] == 0


async def test_a_pass_with_nothing_new_touches_nothing(
    store: Store, layout: HomeLayout, clock: FakeClock
) -> None:
    await finished_ticket(store, layout)
    prune = pruner(store, layout, clock)
    clock.advance(8 * DAY_SECONDS)
    assert len((await prune.prune()).removals) == 1

    assert (await prune.prune()).removals == []


async def test_running_queued_and_undelivered_tickets_keep_everything(
    store: Store, layout: HomeLayout, clock: FakeClock
) -> None:
    done = await finished_ticket(store, layout)
    undelivered = await finished_ticket(store, layout, delivered=False)
    running = (await store.submit_ticket(ticket("r"))).ticket_id
    await claim(store)
    queued = (await store.submit_ticket(ticket("q"))).ticket_id
    kept = [*write_files(layout, running, "r"), *write_files(layout, queued, "q")]
    kept += [layout.ticket_workspaces(undelivered), layout.delivery_archive(undelivered)]

    clock.advance(1000 * DAY_SECONDS)
    report = await pruner(store, layout, clock, tickets=None).prune()

    assert {removal.ticket_id for removal in report.removals} == {done}
    assert all(path.exists() for path in kept)
    left = {t.id for t in await store.list_tickets(limit=10)}
    assert left == {done, undelivered, running, queued}


async def test_a_retried_ticket_is_not_pruned(
    store: Store, layout: HomeLayout, clock: FakeClock
) -> None:
    submitted = await store.submit_ticket(ticket(task("a", max_attempts=1)))
    claimed = await claim(store)
    await store.fail_attempt(claimed.attempt.token, reason=ExitReason.EXIT_CODE, error="boom")
    assert await store.mark_delivered(submitted.ticket_id, TicketState.FAILED)
    write_files(layout, submitted.ticket_id)
    await store.retry(submitted.ticket_id, "a")  # queued again: it needs its files
    clock.advance(1000 * DAY_SECONDS)

    report = await pruner(store, layout, clock).prune()

    assert report.removals == []
    assert layout.ticket_workspaces(submitted.ticket_id).exists()


async def test_a_kept_worktree_is_never_touched_and_keeps_its_row(
    store: Store, layout: HomeLayout, clock: FakeClock
) -> None:
    ticket_id = await finished_ticket(store, layout)
    worktree = layout.worktree(ticket_id, "a")
    worktree.mkdir(parents=True)
    (worktree / ".git").write_text("gitdir: /somewhere/.git/worktrees/a\n")
    (worktree / "conflicted.py").write_text("<<<<<<<\n")

    clock.advance(1000 * DAY_SECONDS)
    report = await pruner(store, layout, clock).prune()

    assert (worktree / "conflicted.py").exists() and (worktree / ".git").exists()
    assert report.tickets_removed == []
    assert report.kept_worktrees == [layout.ticket_worktrees(ticket_id)]
    assert not any(layout.root / "worktrees" in p.parents for p in removed_paths(report))
    assert (await store.get_ticket(ticket_id)).id == ticket_id
    assert not layout.ticket_workspaces(ticket_id).exists()  # its other files did go


async def test_a_kind_kept_for_ever_stays_and_keeps_the_row(
    store: Store, layout: HomeLayout, clock: FakeClock
) -> None:
    ticket_id = await finished_ticket(store, layout)
    clock.advance(1000 * DAY_SECONDS)

    report = await pruner(store, layout, clock, deliveries=None).prune()

    assert layout.delivery_archive(ticket_id).exists()
    assert report.tickets_removed == []


async def test_a_dry_run_removes_nothing_and_lists_the_same(
    store: Store, layout: HomeLayout, clock: FakeClock
) -> None:
    ticket_id = await finished_ticket(store, layout)
    files = write_files(layout, 99)  # a stranger's files (no row): never looked at
    clock.advance(400 * DAY_SECONDS)
    prune = pruner(store, layout, clock)

    dry = await prune.prune(dry_run=True)
    assert all(removal.path.exists() for removal in dry.removals)
    assert dry.tickets_removed == [ticket_id]
    assert await store.pruned_files(ticket_id) is None

    real = await prune.prune()
    assert [(r.path, r.bytes) for r in real.removals] == [(r.path, r.bytes) for r in dry.removals]
    assert real.tickets_removed == dry.tickets_removed
    assert all(path.exists() for path in files)


async def test_a_symlink_in_a_workspace_is_removed_not_followed(
    store: Store, layout: HomeLayout, clock: FakeClock, tmp_path: Path
) -> None:
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    ticket_id = await finished_ticket(store, layout)
    (layout.workspace(ticket_id, "a") / "link").symlink_to(outside)
    clock.advance(8 * DAY_SECONDS)

    await pruner(store, layout, clock).prune()

    assert (outside / "keep.txt").read_text() == "keep"
    assert not layout.ticket_workspaces(ticket_id).exists()


async def test_removing_rows_shrinks_a_new_database(
    store: Store, layout: HomeLayout, clock: FakeClock
) -> None:
    for _ in range(40):
        await store.submit_ticket(ticket("a", title="x" * 4000))
        claimed = await claim(store)
        await store.complete_attempt(claimed.attempt.token, result={"pad": "y" * 4000})
    for row in await store.list_tickets(limit=100):
        await store.mark_delivered(row.id, TicketState.SUCCEEDED)
    assert (await store.database_space()).auto_vacuum == "incremental"
    clock.advance(400 * DAY_SECONDS)

    report = await pruner(store, layout, clock).prune()

    assert len(report.tickets_removed) == 40
    assert report.database_bytes > 0
    assert (await store.database_space()).free_pages == 0


async def test_the_daemon_side_task_prunes_once_a_day(
    store: Store, layout: HomeLayout, clock: FakeClock
) -> None:
    ticket_id = await finished_ticket(store, layout)
    clock.advance(8 * DAY_SECONDS)
    passes = 0

    async def sleep(seconds: float) -> None:
        nonlocal passes
        assert seconds in (60.0, DAY_SECONDS)
        passes += 1
        if passes == 3:
            raise asyncio.CancelledError
        await asyncio.sleep(0)

    with pytest.raises(asyncio.CancelledError):
        await run_retention(pruner(store, layout, clock), sleep=sleep)

    assert passes == 3  # the first delay, then a pass, then a day, then a pass
    assert not layout.ticket_workspaces(ticket_id).exists()
