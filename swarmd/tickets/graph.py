"""The task graph of a ticket: unique names, known needs, no cycles; and its dependency order."""

from __future__ import annotations

import dataclasses
import heapq
from collections import deque
from collections.abc import Collection, Mapping, Sequence

from swarmd.errors import TicketError
from swarmd.models import TaskSpec
from swarmd.text import quote

MAX_TASKS = 10_000
SHOWN_CYCLE_TASKS = 12


def validate_task_graph(
    tasks: Sequence[TaskSpec], *, existing: Collection[str] = (), source: str | None = None
) -> None:
    """Refuse duplicate names, unknown or self needs, and cycles; O(tasks + needs).

    ``existing`` names tasks already in the ticket: new tasks may need them, not reuse them.
    """
    prefix = f"{source}: " if source else ""
    if len(tasks) > MAX_TASKS:
        raise TicketError(f"{prefix}{len(tasks):,} tasks is over the limit of {MAX_TASKS:,}")
    known = frozenset(existing)
    position: dict[str, int] = {}
    for number, task in enumerate(tasks, start=1):
        if task.name in position:
            raise TicketError(
                f"{prefix}task {quote(task.name)} is defined twice "
                f"(tasks #{position[task.name] + 1} and #{number})"
            )
        if task.name in known:
            raise TicketError(f"{prefix}task {quote(task.name)} already exists in this ticket")
        position[task.name] = number - 1
    for task in tasks:
        for need in task.needs:
            if need == task.name:
                raise TicketError(f"{prefix}task {quote(task.name)} needs itself")
            if need not in position and need not in known:
                raise TicketError(
                    f"{prefix}task {quote(task.name)} needs unknown task {quote(need)}"
                )
    cycle = find_cycle(tasks, position)
    if cycle:
        shown = " -> ".join(cycle)
        if len(cycle) > SHOWN_CYCLE_TASKS:
            shown = f"{' -> '.join(cycle[:5])} -> ... -> {' -> '.join(cycle[-3:])}"
            shown += f" ({len(cycle) - 1:,} tasks)"
        raise TicketError(f"{prefix}tasks form a cycle through needs: {shown}")


def find_cycle(tasks: Sequence[TaskSpec], position: Mapping[str, int]) -> list[str]:
    """A cycle among ``tasks`` as names (first repeated at the end), or ``[]``; iterative."""
    waiting, dependents = _need_counts(tasks, position)
    ready = deque(index for index, count in enumerate(waiting) if count == 0)
    while ready:
        for dependent in dependents[ready.popleft()]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                ready.append(dependent)
    stuck = [index for index, count in enumerate(waiting) if count]
    if not stuck:
        return []
    # Every stuck task still waits on a stuck need, so following stuck needs must loop.
    path: list[int] = []
    seen: dict[int, int] = {}
    current = stuck[0]
    while current not in seen:
        seen[current] = len(path)
        path.append(current)
        current = next(
            position[need]
            for need in tasks[current].needs
            if need in position and waiting[position[need]]
        )
    loop = path[seen[current] :]
    start = loop.index(min(loop))
    loop = loop[start:] + loop[:start]
    return [tasks[index].name for index in [*loop, loop[0]]]


def _need_counts(
    tasks: Sequence[TaskSpec], position: Mapping[str, int]
) -> tuple[list[int], list[list[int]]]:
    """For each task, how many of its needs lie inside ``tasks``; and who needs each task."""
    waiting = [0] * len(tasks)
    dependents: list[list[int]] = [[] for _ in tasks]
    for index, task in enumerate(tasks):
        for need in task.needs:
            if need in position:
                waiting[index] += 1
                dependents[position[need]].append(index)
    return waiting, dependents


def order_tasks(tasks: Sequence[TaskSpec]) -> tuple[TaskSpec, ...]:
    """``tasks`` (a valid graph) in dependency order, and each task's needs in that order too.

    Every task comes after the tasks it needs; among tasks free to come next, the one declared
    first does, so a ticket already written in dependency order keeps its order. Needs on
    tasks outside ``tasks`` (already in the ticket) come first, as written. Whatever merges
    outputs in the order of ``tasks`` or of ``needs`` can rely on this.
    """
    waiting, dependents = _need_counts(
        tasks, {task.name: index for index, task in enumerate(tasks)}
    )
    free = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(free)
    order: list[int] = []
    while free:
        index = heapq.heappop(free)
        order.append(index)
        for dependent in dependents[index]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(free, dependent)
    rank = {tasks[index].name: rank for rank, index in enumerate(order)}
    return tuple(
        dataclasses.replace(task, needs=tuple(sorted(task.needs, key=lambda n: rank.get(n, -1))))
        for task in (tasks[index] for index in order)
    )
