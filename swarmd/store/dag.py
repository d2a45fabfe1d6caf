"""New task graphs, checked before any of it is written.

The rules (unique names, known needs, no cycles) and the dependency order are the ticket
files' own (``swarmd.tickets.graph``): one implementation, so a planner's graph, a ticket
file and the store can never disagree about what a valid graph is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

from swarmd.errors import TicketError
from swarmd.models import TaskSpec
from swarmd.tickets.graph import order_tasks, validate_task_graph


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
    validate_task_graph(specs, existing=existing)
    return list(order_tasks(specs))


def _with_clean_needs(spec: TaskSpec, after: str | None) -> TaskSpec:
    needs = tuple(dict.fromkeys(spec.needs))
    if not needs and after is not None:
        needs = (after,)
    return spec if needs == spec.needs else dataclasses.replace(spec, needs=needs)
