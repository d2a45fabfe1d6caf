"""Checks on a graph of new tasks before any of it is written: names, needs, cycles."""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Collection, Sequence

from swarmd.errors import TicketError
from swarmd.models import TaskSpec


def order_new_tasks(
    tasks: Sequence[TaskSpec], *, existing: Collection[str] = (), after: str | None = None
) -> list[TaskSpec]:
    """The new tasks, validated, in dependency order (ties keep the order given).

    ``existing`` names the tasks already in the ticket, which new tasks may need. With
    ``after``, every new task that needs nothing is made to need that existing task.
    Duplicate needs are dropped, so each need is counted once.
    """
    if after is not None and after not in existing:
        raise TicketError(f"there is no task {after!r} to add tasks after")
    specs = [_with_clean_needs(spec, after) for spec in tasks]
    index: dict[str, int] = {}
    for position, spec in enumerate(specs):
        if spec.name in existing:
            raise TicketError(f"the ticket already has a task named {spec.name!r}")
        if spec.name in index:
            raise TicketError(f"two tasks are named {spec.name!r}")
        index[spec.name] = position
    for spec in specs:
        for need in spec.needs:
            if need == spec.name:
                raise TicketError(f"task {spec.name!r} needs itself")
            if need not in index and need not in existing:
                raise TicketError(
                    f"task {spec.name!r} needs {need!r}, which is not a task of this ticket"
                )
    return [specs[position] for position in _topological_positions(specs, index)]


def _with_clean_needs(spec: TaskSpec, after: str | None) -> TaskSpec:
    needs = tuple(dict.fromkeys(spec.needs))
    if not needs and after is not None:
        needs = (after,)
    return spec if needs == spec.needs else dataclasses.replace(spec, needs=needs)


def _topological_positions(specs: Sequence[TaskSpec], index: dict[str, int]) -> list[int]:
    """Kahn's algorithm over the new tasks only; needs on existing tasks are already met."""
    waiting = [0] * len(specs)
    dependents: list[list[int]] = [[] for _ in specs]
    for position, spec in enumerate(specs):
        for need in spec.needs:
            if need in index:
                waiting[position] += 1
                dependents[index[need]].append(position)
    ready = [position for position, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        position = heapq.heappop(ready)
        order.append(position)
        for dependent in dependents[position]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, dependent)
    if len(order) < len(specs):
        stuck = sorted(specs[position].name for position, count in enumerate(waiting) if count)
        raise TicketError(f"tasks {', '.join(map(repr, stuck))} are caught in a cycle of needs")
    return order
