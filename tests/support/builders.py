"""Small builders shared by the store's tests."""

from __future__ import annotations

from typing import Any

from swarmd.models import ClaimedTask, TaskSpec, TicketSpec
from swarmd.store import Store


def task(name: str, *needs: str, **fields: Any) -> TaskSpec:
    return TaskSpec(name=name, needs=needs, **fields)


def ticket(*tasks: TaskSpec | str, title: str = "ticket", **fields: Any) -> TicketSpec:
    specs = tuple(task(t) if isinstance(t, str) else t for t in tasks)
    return TicketSpec(title=title, tasks=specs, **fields)


def chain(length: int) -> TicketSpec:
    """t0 <- t1 <- ... : each task needs the one before it."""
    return ticket(*(task(f"t{i}", *([f"t{i - 1}"] if i else [])) for i in range(length)))


def diamond() -> TicketSpec:
    """top -> left, right -> bottom."""
    return ticket(
        task("top"), task("left", "top"), task("right", "top"), task("bottom", "left", "right")
    )


async def claim(store: Store, name: str | None = None) -> ClaimedTask:
    """Claim the next task, which must exist (and be ``name`` when given)."""
    claimed = await store.claim_ready_task()
    assert claimed is not None, "expected a ready task"
    if name is not None:
        assert claimed.task.name == name
    return claimed


async def succeed(store: Store, name: str | None = None) -> ClaimedTask:
    """Claim the next task and complete it."""
    claimed = await claim(store, name)
    await store.complete_attempt(claimed.attempt.token)
    return claimed


async def states(store: Store, ticket_id: int) -> dict[str, str]:
    return {t.name: t.state.value for t in await store.list_tasks(ticket_id)}
