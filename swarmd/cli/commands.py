"""What the CLI's commands do, as async functions over the store and the daemon.

Each returns plain data for ``cli.py`` to print. Short writes (submit, cancel, retry) go
straight to the database in their own transactions; the daemon notices them at once.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarmd.agents.registry import AgentRegistry, load_agent_registry
from swarmd.cli.progress import ProgressPrinter, exit_code_for, follow_ticket
from swarmd.config import OFFLINE_MODEL, Settings
from swarmd.errors import DaemonRunningError, InputError, TicketError
from swarmd.home import HomeLayout, HomeLock, heartbeat_is_stale, running_daemon_pid
from swarmd.models import Attempt, SubmitResult, Task, Ticket, TicketSpec, TicketState
from swarmd.store import Store
from swarmd.store.backup import BackupResult, RestoreResult
from swarmd.store.stats import StoreStats, WindowStats, start_of_day
from swarmd.tickets import load_ticket_file
from swarmd.wire.report import UsageTotals

if TYPE_CHECKING:
    from swarmd.git.binding import RepoBinding

STATUS_WINDOWS = {"5m": 300.0, "60m": 3600.0}


@dataclass(frozen=True, slots=True)
class RunOutcome:
    exit_code: int
    lines: list[str]


@dataclass(frozen=True, slots=True)
class TicketView:
    ticket: Ticket
    tasks: list[Task]
    attempts: dict[int, list[Attempt]]
    outputs: dict[str, Path]


def check_agents(spec: TicketSpec, registry: AgentRegistry) -> None:
    """Refuse a ticket naming an agent nobody declared, before anything is written."""
    for task in spec.tasks:
        try:
            registry.resolve(task.agent or spec.agent)
        except TicketError as exc:
            raise TicketError(f"task {task.name!r}: {exc}") from None


async def submit_file(
    settings: Settings, path: Path, *, priority: int | None = None, key: str | None = None
) -> SubmitResult:
    spec = load_ticket_file(path)
    check_agents(spec, load_agent_registry(settings.agents_path))
    binding = bind_ticket_repository(settings, spec)
    async with await Store.open(settings.layout.database) as store:
        return await store.submit_ticket(
            spec,
            priority=priority,
            key=key,
            default_max_attempts=settings.max_attempts,
            repo=binding.to_dict() if binding is not None else None,
        )


def bind_ticket_repository(settings: Settings, spec: TicketSpec) -> RepoBinding | None:
    """The repository a ticket works on, its base pinned to a commit now; None for none."""
    if spec.repo is None:
        return None
    from swarmd.git.binding import bind_repository
    from swarmd.git.registry import load_repo_registry

    return bind_repository(
        load_repo_registry(settings.repos_path),
        spec.repo,
        base=spec.base,
        deliver=spec.deliver,
        home=settings.home,
    )


async def wait_for_ticket(
    settings: Settings, ticket_id: int, *, timeout: float | None
) -> TicketState:
    printer = ProgressPrinter()
    try:
        async with asyncio.timeout(timeout):
            ticket = await follow_ticket(settings.layout.database, ticket_id, printer=printer)
    except TimeoutError:
        printer.close()
        raise InputError(f"ticket {ticket_id} did not finish within {timeout:g} s") from None
    printer.close()
    return ticket.state


def offline_note(settings: Settings) -> str | None:
    """What to say before running a ticket when no provider is configured."""
    if settings.model_chain == (OFFLINE_MODEL,):
        return "note: no LLM provider is configured; llm tasks use the offline echo/echo model"
    return None


async def run_ticket(
    settings: Settings,
    ref: str,
    *,
    wait: bool,
    timeout: float | None,
    priority: int | None,
) -> RunOutcome:
    """Submit (a file) or find (an id) a ticket, then let the daemon or this process run it."""

    ticket_id = await resolve_ticket_ref(settings, ref, priority=priority)
    daemon_pid = running_daemon_pid(settings.layout)
    if daemon_pid is not None:
        if not wait:
            return RunOutcome(0, [f"ticket {ticket_id} queued for the daemon (pid {daemon_pid})"])
        state = await wait_for_ticket(settings, ticket_id, timeout=timeout)
    else:
        state_or_none = await run_in_process(settings, ticket_id, timeout=timeout)
        if state_or_none is None:
            return RunOutcome(
                1,
                [f"ticket {ticket_id} stopped before it finished; its tasks were requeued"],
            )
        state = state_or_none
    return RunOutcome(exit_code_for(state), await describe_outcome(settings, ticket_id))


async def run_in_process(
    settings: Settings, ticket_id: int, *, timeout: float | None
) -> TicketState | None:
    """Run an in-process supervisor for this ticket alone, with progress on stderr."""
    from swarmd.daemon.serve import serve

    stop = asyncio.Event()
    printer = ProgressPrinter()
    watcher = asyncio.create_task(
        follow_ticket(settings.layout.database, ticket_id, printer=printer, stop=stop),
        name="progress",
    )
    timer = asyncio.get_running_loop().call_later(timeout, stop.set) if timeout else None
    try:
        return await serve(settings, base_env=dict(os.environ), only_ticket=ticket_id, stop=stop)
    finally:
        if timer is not None:
            timer.cancel()
        stop.set()
        await watcher
        printer.close()


async def resolve_ticket_ref(settings: Settings, ref: str, *, priority: int | None) -> int:
    if ref.isdigit():
        async with await Store.open(settings.layout.database) as store:
            return (await store.get_ticket(int(ref))).id
    path = Path(ref)
    if not path.exists():
        raise InputError(f"{ref!r} is neither a ticket id nor a ticket file")
    return (await submit_file(settings, path, priority=priority)).ticket_id


async def describe_outcome(settings: Settings, ticket_id: int) -> list[str]:
    layout = settings.layout
    async with await Store.open(settings.layout.database) as store:
        ticket = await store.get_ticket(ticket_id)
        tasks = await store.list_tasks(ticket_id)
    outputs = find_outputs(layout, ticket_id, tasks)
    counts = ticket.task_counts
    summary = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    lines = [f"ticket {ticket_id} {ticket.state.value}: {summary}"]
    for task in tasks:
        if task.state.value in ("dead", "skipped", "cancelled") and task.last_error:
            lines.append(f"  {task.name}: {task.state.value}: {task.last_error}")
    lines.extend(f"{label}: {path}" for label, path in outputs.items())
    return lines


async def run_daemon(settings: Settings) -> None:
    """``swarmd run``: the daemon, in this process, until a signal."""
    from swarmd.daemon.serve import serve

    await serve(settings, base_env=dict(os.environ))


def list_agents(settings: Settings) -> dict[str, str]:
    """Every agent a ticket may name, with its kind."""
    registry = load_agent_registry(settings.agents_path)
    return {name: registry.resolve(name).kind.value for name in registry.names()}


def verify_archive(path: Path) -> list[str]:
    """Every problem of an archive against its manifest (none: it is intact)."""
    from swarmd.outputs import verify_archive as check

    return check(path)


def backup(settings: Settings, path: Path, *, overwrite: bool) -> BackupResult:
    from swarmd.store.backup import backup_database

    return backup_database(settings.layout.database, path, overwrite=overwrite)


def restore(settings: Settings, path: Path) -> RestoreResult:
    """Put a backup in place of the database; refused while a daemon runs on the home."""
    from swarmd.store.backup import restore_database

    pid = running_daemon_pid(settings.layout)
    if pid is not None:
        who = f" (pid {pid})" if pid > 0 else ""
        raise DaemonRunningError(
            f"a daemon{who} is running on {settings.home}; stop it first "
            "(systemctl stop swarmd). Nothing was changed"
        )
    # Holding the home's lock keeps a daemon from starting while the file is replaced.
    lock = HomeLock(settings.layout.lock)
    lock.acquire()
    try:
        return restore_database(
            path,
            settings.layout.database,
            id_floor=settings.layout.highest_ticket_id_on_disk(),
        )
    finally:
        lock.release()


async def list_tickets(settings: Settings, *, state: str | None, limit: int) -> list[Ticket]:
    async with await Store.open(settings.layout.database) as store:
        return await store.list_tickets(state=TicketState(state) if state else None, limit=limit)


async def show_ticket(settings: Settings, ticket_id: int) -> TicketView:
    layout = settings.layout
    async with await Store.open(settings.layout.database) as store:
        ticket = await store.get_ticket(ticket_id)
        tasks = await store.list_tasks(ticket_id)
        attempts = {task.id: await store.list_attempts(task.id) for task in tasks}
    return TicketView(ticket, tasks, attempts, find_outputs(layout, ticket_id, tasks))


def find_outputs(layout: HomeLayout, ticket_id: int, tasks: list[Task]) -> dict[str, Path]:
    """The ticket's delivery archive and its tasks' archives, those that exist, by label."""
    outputs: dict[str, Path] = {}
    delivery = layout.delivery_archive(ticket_id)
    if delivery.exists():
        outputs["delivery"] = delivery
    for task in tasks:
        archive = layout.task_archive(ticket_id, task.name)
        if archive.exists():
            outputs[f"task {task.name}"] = archive
    return outputs


async def cancel(settings: Settings, ticket_id: int, task: str | None) -> list[str]:
    async with await Store.open(settings.layout.database) as store:
        return [t.name for t in await store.cancel(ticket_id, task)]


async def retry(settings: Settings, ticket_id: int, task: str | None) -> list[str]:
    async with await Store.open(settings.layout.database) as store:
        return [t.name for t in await store.retry(ticket_id, task)]


async def gather_status(settings: Settings) -> dict[str, Any]:
    """Everything ``swarmd status`` shows, and the exit code a monitor should see."""

    pid = running_daemon_pid(settings.layout)
    now = time.time()
    async with await Store.open(settings.layout.database) as store:
        queue = await store.queue_depth()
        beat = await store.read_heartbeat()
        stats = StoreStats(store.database)
        windows = await stats.attempt_windows(list(STATUS_WINDOWS.values()))
        usage = UsageTotals.from_results(await stats.results_since(start_of_day(now)))
    daemon: dict[str, Any] = {"running": pid is not None, "pid": pid}
    live: Mapping[str, Any] = {}
    exit_code = 3 if pid is None else 0
    if pid is not None and beat is not None:
        age = time.time() - float(beat["heartbeat_at"])
        stale = heartbeat_is_stale(age)
        daemon.update(
            pid=beat["pid"],
            version=beat["version"],
            uptime_s=round(time.time() - float(beat["started_at"]), 1),
            heartbeat_age_s=round(age, 1),
            stale=stale,
        )
        live = beat.get("status") or {}
        exit_code = 1 if stale else 0
    elif pid is not None:
        daemon["stale"] = False
    return {
        "exit_code": exit_code,
        "daemon": daemon,
        "queue": queue,
        "workers": list(live.get("workers", [])),
        "gate": live.get("gate"),
        "models": live.get("models", {}),
        "throughput": {
            label: describe_window(windows[seconds], settings.max_concurrent_workers)
            for label, seconds in STATUS_WINDOWS.items()
        },
        "usage_today": describe_usage(usage),
    }


def describe_window(window: WindowStats, max_workers: int) -> dict[str, Any]:
    """A window of attempts as ``swarmd status --json`` shows it."""

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "window_s": window.window_s,
        "finished": window.finished,
        "succeeded": window.succeeded,
        "failed": window.failed,
        "per_minute": round(window.per_minute, 2),
        "p50_s": rounded(window.p50_s),
        "p95_s": rounded(window.p95_s),
        "busy_worker_s": round(window.busy_worker_s, 1),
        "utilisation": round(window.utilisation(max_workers), 4),
        "max_workers": max_workers,
    }


def describe_usage(usage: UsageTotals) -> dict[str, Any]:
    """Tokens and cost since midnight, in total and by model."""

    def shown(prompt: int, completion: int, cost: float) -> dict[str, Any]:
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "tokens": prompt + completion,
            "cost_usd": round(cost, 6),
        }

    total = usage.total
    return {
        **shown(total.prompt_tokens, total.completion_tokens, total.cost_usd),
        "by_model": {
            model: shown(u.prompt_tokens, u.completion_tokens, u.cost_usd)
            for model, u in sorted(usage.by_model.items())
        },
    }
