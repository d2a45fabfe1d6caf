"""``swarmd show``: one ticket as a person reads it, with its tasks, attempts, outputs, why
a task failed, where its delivery stands, what retention pruned, and for a repository
ticket its branch, pull request and kept worktrees."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmd.cli.commands import open_existing_store
from swarmd.cli.failures import TaskFailure, task_failures
from swarmd.config import Settings
from swarmd.home import HomeLayout
from swarmd.models import Attempt, Delivery, ExitReason, Task, Ticket
from swarmd.store.retention import PrunedFiles


@dataclass(frozen=True, slots=True)
class TicketView:
    ticket: Ticket
    tasks: list[Task]
    attempts: dict[int, list[Attempt]]
    outputs: dict[str, Path]
    failures: dict[str, TaskFailure]  # by task name: each failed or dead task's last failure
    repository: RepositoryView | None = None  # a ticket that works on a repository
    pruned: PrunedFiles | None = None  # what retention removed of its files
    delivery: Delivery | None = None  # a finished ticket's: written, failed (why), or not yet


@dataclass(frozen=True, slots=True)
class KeptWorktree:
    task: str
    path: Path
    why: str


@dataclass(frozen=True, slots=True)
class RepositoryView:
    """A repository ticket as ``show`` tells it: where its work went, and what is kept."""

    name: str
    path: Path
    base: str  # the ref it asked for
    base_commit: str  # pinned at submit
    branch: str  # the ticket's branch, holding every task's merged commit
    head: str | None  # its tip when delivered
    deliver: str
    pull_request: str | None
    worktrees: list[KeptWorktree]


async def show_ticket(settings: Settings, ticket_id: int) -> TicketView:
    layout = settings.layout
    async with await open_existing_store(settings, ticket_id) as store:
        ticket = await store.get_ticket(ticket_id)
        tasks = await store.list_tasks(ticket_id)
        attempts = {task.id: await store.list_attempts(task.id) for task in tasks}
        binding = await store.ticket_repo(ticket_id)
        repo_delivery = await store.repo_delivery(ticket_id) if binding else (None, None)
        pruned = await store.pruned_files(ticket_id)
        finished = ticket.state.is_terminal
        delivery = await store.get_delivery(ticket_id) if finished else None
    return TicketView(
        ticket,
        tasks,
        attempts,
        layout.existing_outputs(ticket_id, [task.name for task in tasks]),
        task_failures(layout, ticket_id, tasks, attempts),
        repository_view(layout, ticket, tasks, attempts, binding, repo_delivery),
        pruned,
        delivery,
    )


def repository_view(
    layout: HomeLayout,
    ticket: Ticket,
    tasks: list[Task],
    attempts: Mapping[int, list[Attempt]],
    binding: Mapping[str, Any] | None,
    delivery: tuple[str | None, str | None],
) -> RepositoryView | None:
    if binding is None:
        return None
    from swarmd.git.binding import RepoBinding

    bound = RepoBinding.from_dict(binding)
    kept = []
    for task in tasks:
        path = layout.worktree(ticket.id, task.name)
        if path.exists():
            kept.append(KeptWorktree(task.name, path, _why_kept(ticket, attempts.get(task.id))))
    head, pull_request = delivery
    return RepositoryView(
        name=bound.entry.name,
        path=bound.entry.path,
        base=bound.base_ref,
        base_commit=bound.base_commit,
        branch=bound.ticket_branch(ticket.id),
        head=head,
        deliver=bound.deliver,
        pull_request=pull_request,
        worktrees=kept,
    )


def _why_kept(ticket: Ticket, history: list[Attempt] | None) -> str:
    last = history[-1] if history else None
    if not ticket.state.is_terminal:
        return "the ticket is still running"
    if last is not None and last.exit_reason is ExitReason.CONFLICT:
        return "kept for a person: its work conflicts with the ticket's branch (locked)"
    return "kept: it holds work that is not merged into the ticket's branch"
