"""How the CLI shows things: rich tables for people, plain JSON for scripts.

Text that came from outside (titles, names, errors) goes into ``Text`` objects, never into
markup, and through ``swarmd.cli.quoting``: a title like ``[red]`` stays a title.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from swarmd.cli.failures import TaskFailure, failure_lines
from swarmd.cli.quoting import printable
from swarmd.models import Attempt, Delivery, Task, Ticket
from swarmd.store.retention import PrunedFiles

if TYPE_CHECKING:
    from swarmd.cli.ticket_view import RepositoryView

ERROR_COLUMN_CHARS = 60
TITLE_CHARS = 200

STATE_STYLES = {
    "succeeded": "green",
    "running": "cyan",
    "ready": "blue",
    "queued": "blue",
    "blocked": "dim",
    "failed": "yellow",
    "dead": "red",
    "cancelled": "magenta",
    "skipped": "dim",
}


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return value


def print_json(value: Any) -> None:
    print(json.dumps(to_jsonable(value), indent=2, sort_keys=False))


def styled(state: str) -> str:
    style = STATE_STYLES.get(state)
    return f"[{style}]{state}[/{style}]" if style else state


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def plain(text: str, limit: int | None = None) -> Text:
    """Untrusted text for a table cell or a line: escaped, cut with an ellipsis, no markup."""
    return Text(printable(text, limit))


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def counts_line(counts: Mapping[str, int]) -> str:
    return " ".join(f"{state}={n}" for state, n in counts.items() if n) or "-"


def print_tickets(console: Console, tickets: Sequence[Ticket]) -> None:
    table = Table("id", "state", "title", "tasks", "priority", "created", box=None)
    for ticket in tickets:
        table.add_row(
            str(ticket.id),
            state_text(ticket.state.value),
            plain(ticket.title, TITLE_CHARS),
            counts_line(ticket.task_counts),
            str(ticket.priority),
            when(ticket.created_at),
        )
    console.print(table if tickets else "no tickets")


def print_ticket(
    console: Console,
    ticket: Ticket,
    tasks: Sequence[Task],
    attempts: Mapping[int, Sequence[Attempt]],
    outputs: Mapping[str, Path],
    failures: Mapping[str, TaskFailure],
    repository: RepositoryView | None = None,
    pruned: PrunedFiles | None = None,
    delivery: Delivery | None = None,
) -> None:
    heading = Text(f"ticket {ticket.id}", style="bold")
    console.print(heading.append(": ", style="").append(printable(ticket.title, TITLE_CHARS)))
    console.print(
        Text("state: ")
        .append_text(state_text(ticket.state.value))
        .append(f"   priority: {ticket.priority}")
    )
    console.print(f"created: {when(ticket.created_at)}   finished: {when(ticket.finished_at)}")
    table = Table("task", "state", "agent", "needs", "attempts", "last", "error", box=None)
    for task in tasks:
        history = attempts.get(task.id, ())
        last = history[-1] if history else None
        last_text = "-"
        if last is not None:
            took = (last.ended_at or time.time()) - last.started_at
            reason = last.exit_reason.value if last.exit_reason else "running"
            last_text = f"{reason} in {duration(took)}"
        table.add_row(
            plain(task.name),
            state_text(task.state.value),
            plain(task.agent),
            plain(",".join(task.needs) or "-"),
            str(len(history)),
            last_text,
            # Cut here with an ellipsis; the whole error is under the table.
            plain(task.last_error or "", ERROR_COLUMN_CHARS),
        )
    console.print(table)
    for failure in failures.values():
        for line in failure_lines(failure):
            console.print(Text(line), soft_wrap=True)
    if delivery is not None and not delivery.written:
        why = f"failed: {printable(delivery.error, 2000)}" if delivery.error else "not written yet"
        console.print(Text(f"delivery: {why}"), soft_wrap=True)
    for label, path in outputs.items():
        console.print(Text(f"{printable(label)}: {printable(str(path))}"), soft_wrap=True)
    if repository is not None:
        print_repository(console, repository)
    if pruned is not None:
        kinds = ", ".join(kind.replace("_", " ") for kind in pruned.kinds)
        console.print(Text(f"files pruned: {kinds} (retention, {when(pruned.at)})"))


def print_repository(console: Console, repository: RepositoryView) -> None:
    base = f"{printable(repository.base)} at {repository.base_commit[:12]}"
    console.print(
        Text(f"repository: {printable(repository.name)} ({printable(str(repository.path))})")
    )
    head = repository.head[:12] if repository.head else "not delivered yet"
    console.print(Text(f"branch: {repository.branch} from {base}, head {head}"))
    if repository.pull_request:
        console.print(Text(f"pull request: {printable(repository.pull_request)}"))
    for kept in repository.worktrees:
        line = f"worktree of {printable(kept.task)}: {printable(str(kept.path))}: {kept.why}"
        console.print(Text(line), soft_wrap=True)


def print_key_values(console: Console, rows: Iterable[tuple[str, Any]]) -> None:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(plain(key), plain(str(value)))
    console.print(table)


def print_agents(console: Console, agents: Mapping[str, str]) -> None:
    """Each agent a ticket may name, with its kind, under a header row."""
    table = Table("agent", "kind", box=None)
    for name, kind in agents.items():
        table.add_row(plain(name), plain(kind))
    console.print(table)
