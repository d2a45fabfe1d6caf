"""What the CLI's commands do, as async functions over the store and the daemon.

Each returns plain data for ``cli.py`` to print. Short writes (submit, cancel, retry) go
straight to the database in their own transactions; the daemon notices them at once.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from swarmd.addresses import mask_database_url
from swarmd.agents.registry import AgentRegistry, load_agent_registry
from swarmd.cli.failures import FAILED_STATES, failure_lines, task_failures
from swarmd.cli.progress import ProgressPrinter, exit_code_for, follow_ticket
from swarmd.cli.quoting import literal, printable
from swarmd.config import OFFLINE_MODEL, Settings
from swarmd.doorbell import ring
from swarmd.errors import DaemonRunningError, InputError, NotFoundError, TicketError
from swarmd.home import HomeLock, running_daemon_pid
from swarmd.models import (
    SubmitResult,
    Ticket,
    TicketSpec,
    TicketState,
)
from swarmd.store import Store
from swarmd.store.backup import BackupResult, RestoreResult
from swarmd.tickets import load_ticket_file

if TYPE_CHECKING:
    from swarmd.cli.prune_view import PruneOutcome
    from swarmd.git.binding import RepoBinding
    from swarmd.spawn.spawners import WorkerSpawner


@dataclass(frozen=True, slots=True)
class RunOutcome:
    exit_code: int
    lines: list[str]


def check_agents(spec: TicketSpec, registry: AgentRegistry) -> None:
    """Refuse a ticket naming an agent nobody declared, before anything is written."""
    for task in spec.tasks:
        try:
            registry.resolve(task.agent or spec.agent)
        except TicketError as exc:
            raise TicketError(f"task {task.name!r}: {exc}") from None


async def submit_file(
    settings: Settings,
    path: Path,
    *,
    priority: int | None = None,
    key: str | None = None,
    before_submit: Callable[[], Awaitable[None]] | None = None,
) -> SubmitResult:
    """Check the ticket file at ``path`` and queue it; ``before_submit`` runs between the two."""
    spec = load_ticket_file(path)
    check_agents(spec, load_agent_registry(settings.agents_path))
    binding = bind_ticket_repository(settings, spec)
    if before_submit is not None:
        await before_submit()
    async with await Store.open(settings.store_location) as store:
        submitted = await store.submit_ticket(
            spec,
            priority=priority,
            key=key,
            default_max_attempts=settings.max_attempts,
            repo=binding.to_dict() if binding is not None else None,
        )
    ring(settings.layout.doorbell)
    return submitted


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
) -> TicketState | None:
    """Follow the ticket until it finishes; None when ``timeout`` passed first."""
    printer = ProgressPrinter()
    try:
        async with asyncio.timeout(timeout):
            ticket = await follow_ticket(settings.store_location, ticket_id, printer=printer)
    except TimeoutError:
        return None
    finally:
        printer.close()
    return ticket.state


def offline_note(settings: Settings) -> str | None:
    """What to say before running a ticket when no provider is configured."""
    if settings.model_chain == (OFFLINE_MODEL,):
        return "note: no LLM provider is configured; llm tasks use the offline echo/echo model"
    return None


def no_daemon_note(settings: Settings, ticket_id: int) -> str | None:
    """What to say before waiting for a ticket that no daemon is there to run."""
    if running_daemon_pid(settings.layout) is not None:
        return None
    return (
        f"note: no daemon is running on {printable(str(settings.home))}; ticket {ticket_id} "
        f"waits until one starts (swarmd run), or runs here with: swarmd run-ticket {ticket_id}"
    )


def left_behind(settings: Settings, ticket_id: int) -> str:
    """What becomes of a ticket nobody waits for any more, and how to stop it."""
    pid = running_daemon_pid(settings.layout)
    if pid is None:
        where = "it stays queued until a daemon runs it"
    else:
        where = "it keeps running on the daemon" + (f" (pid {pid})" if pid > 0 else "")
    return f"{where}; to stop it: swarmd cancel {ticket_id}"


async def run_ticket(
    settings: Settings,
    ref: str,
    typed_id: int | None,
    *,
    priority: int | None,
    wait: bool,
    timeout: float | None,
    on_ticket: Callable[[int], None],
) -> RunOutcome:
    """Let the daemon run the ticket ``ref`` names (following it with ``wait``), or run it in
    this process; ``on_ticket`` hears its id as soon as it is known."""
    daemon_pid = running_daemon_pid(settings.layout)
    if daemon_pid is None:
        return await run_in_process(
            settings, ref, typed_id, priority=priority, timeout=timeout, on_ticket=on_ticket
        )
    ticket_id = await resolve_ticket_ref(settings, ref, typed_id, priority=priority)
    on_ticket(ticket_id)
    if not wait:
        return RunOutcome(0, [f"ticket {ticket_id} queued for the daemon (pid {daemon_pid})"])
    state = await wait_for_ticket(settings, ticket_id, timeout=timeout)
    if state is None:
        assert timeout is not None  # only a timeout ends the wait early
        late = f"ticket {ticket_id} did not finish within {timeout:g} s"
        return RunOutcome(1, [f"{late}; {left_behind(settings, ticket_id)}"])
    return RunOutcome(exit_code_for(state), await describe_outcome(settings, ticket_id))


async def run_in_process(
    settings: Settings,
    ref: str,
    typed_id: int | None,
    *,
    priority: int | None,
    timeout: float | None,
    on_ticket: Callable[[int], None],
) -> RunOutcome:
    """Run an in-process supervisor for this ticket alone, with progress on stderr."""
    from swarmd.spawn.groups import scrub_environment
    from swarmd.spawn.spawners import ForkServer, spawner_for

    spawner = spawner_for(
        settings.worker_start,
        env=scrub_environment(os.environ),
        home=settings.home,
        log_path=settings.layout.forkserver_log,
    )

    async def start_spawner() -> None:
        # The fork server starts once the ticket is known to be good and before it is
        # written, so that it imports what workers need while this process submits the
        # ticket and imports and builds the daemon: the first tasks start that much sooner.
        if isinstance(spawner, ForkServer):
            await spawner.start()

    try:
        ticket_id = await resolve_ticket_ref(
            settings, ref, typed_id, priority=priority, before_submit=start_spawner
        )
        on_ticket(ticket_id)
        state = await run_daemon_for(settings, ticket_id, timeout=timeout, spawner=spawner)
    finally:
        if isinstance(spawner, ForkServer):
            await spawner.close()  # the daemon closed it already, unless it never started
    if state is None:
        return RunOutcome(
            1, [f"ticket {ticket_id} stopped before it finished; its tasks were requeued"]
        )
    return RunOutcome(exit_code_for(state), await describe_outcome(settings, ticket_id))


async def run_daemon_for(
    settings: Settings, ticket_id: int, *, timeout: float | None, spawner: WorkerSpawner
) -> TicketState | None:
    from swarmd.daemon.serve import serve

    stop = asyncio.Event()
    printer = ProgressPrinter()
    watcher = asyncio.create_task(
        follow_ticket(settings.store_location, ticket_id, printer=printer, stop=stop),
        name="progress",
    )
    timer = asyncio.get_running_loop().call_later(timeout, stop.set) if timeout else None
    try:
        return await serve(
            settings,
            base_env=dict(os.environ),
            only_ticket=ticket_id,
            stop=stop,
            spawner=spawner,
        )
    finally:
        if timer is not None:
            timer.cancel()
        stop.set()
        await watcher
        printer.close()


async def resolve_ticket_ref(
    settings: Settings,
    ref: str,
    ticket_id: int | None,
    *,
    priority: int | None,
    before_submit: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """The id of the ticket to run: ``ticket_id`` when one was typed (it must exist), else
    the id of the ticket file ``ref`` once submitted. ``before_submit`` runs once the ticket
    is known to be good (it exists, or its file is valid), before anything is written."""
    if ticket_id is not None:
        async with await open_existing_store(settings, ticket_id) as store:
            found = (await store.get_ticket(ticket_id)).id
        if before_submit is not None:
            await before_submit()
        return found
    path = Path(ref)
    if not path.exists():
        raise InputError(f"{literal(ref, 200)} is neither a ticket id nor a ticket file")
    return (
        await submit_file(settings, path, priority=priority, before_submit=before_submit)
    ).ticket_id


def require_database(settings: Settings, ticket_id: int) -> None:
    """A home with no database yet has no ticket ``ticket_id``: ``NotFoundError`` at once,
    before anything (a database, a log) is created looking for it."""
    if not settings.store_exists:
        raise NotFoundError(f"there is no ticket {ticket_id}")


async def open_existing_store(settings: Settings, ticket_id: int) -> Store:
    """The store, which must exist (see ``require_database``)."""
    require_database(settings, ticket_id)
    return await Store.open(settings.store_location)


async def describe_outcome(settings: Settings, ticket_id: int) -> list[str]:
    """How a finished ticket ended: its counts, each failure with its log's tail, its outputs."""
    layout = settings.layout
    async with await Store.open(settings.store_location) as store:
        ticket = await store.get_ticket(ticket_id)
        tasks = await store.list_tasks(ticket_id)
        failed = [t for t in tasks if t.state in FAILED_STATES]
        attempts = {task.id: await store.list_attempts(task.id) for task in failed}
    outputs = layout.existing_outputs(ticket_id, [task.name for task in tasks])
    counts = ticket.task_counts
    summary = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    lines = [f"ticket {ticket_id} {ticket.state.value}: {summary}"]
    failures = task_failures(layout, ticket_id, failed, attempts)
    for task in tasks:
        if task.name in failures:
            lines.extend("  " + line for line in failure_lines(failures[task.name]))
        elif task.state.value in ("dead", "skipped", "cancelled") and task.last_error:
            lines.append(
                f"  {printable(task.name)}: {task.state.value}: {printable(task.last_error, 2000)}"
            )
    lines.extend(f"{label}: {printable(str(path))}" for label, path in outputs.items())
    return lines


def log_unknown_variables() -> list[str]:
    """Log each ``SWARMD_*`` variable no setting reads (environment and ./.env) as
    ``unknown_setting``, and return a sentence for each."""
    from swarmd.logs import get_logger
    from swarmd.unknown_settings import unknown_variables

    log = get_logger("swarmd.cli")
    found = unknown_variables(os.environ)
    for unknown in found:
        log.warning(
            "unknown_setting",
            variable=unknown.name,
            source=unknown.source,
            suggestion=unknown.suggestion,
        )
    return [printable(unknown.describe(), 300) for unknown in found]


async def run_daemon(settings: Settings) -> None:
    """``swarmd run``: the daemon, in this process, until a signal."""
    from swarmd.daemon.serve import serve

    await serve(settings, base_env=dict(os.environ))


DEFAULT_ALERT_TEXT = {"daemon_down": "the daemon is down: `swarmd status` failed"}


async def send_alert(settings: Settings, event_name: str, text: str | None) -> str:
    """``swarmd alert``: one alert, sent now through the daemon's own alert code; what
    happened, in words. Raises ``ConfigError`` when no command or webhook is set, and
    ``AlertError`` when one of them did not take the alert after its retries."""
    from swarmd.daemon.alerts import build_alerter
    from swarmd.errors import AlertError, ConfigError
    from swarmd.models import AlertEvent

    try:
        event = AlertEvent(event_name.strip().lower())
    except ValueError:
        names = ", ".join(e.value for e in AlertEvent)
        raise InputError(f"{literal(event_name)} is not an event; the events are {names}") from None
    alerter = build_alerter(settings, dict(os.environ))
    try:
        if not alerter.enabled:
            raise ConfigError(
                "no alert is configured: set SWARMD_NOTIFY_COMMAND or SWARMD_WEBHOOK_URL"
            )
        if not alerter.wants(event):
            return f"not sent: SWARMD_NOTIFY_EVENTS leaves {event.value} out"
        alerter.send(event, text or DEFAULT_ALERT_TEXT.get(event.value, event.value))
        await alerter.deliver_queued()
    finally:
        await alerter.aclose()
    if alerter.failed:
        raise AlertError(f"the {event.value} alert was not delivered: {alerter.last_error}")
    return f"sent {event.value}"


def list_agents(settings: Settings) -> dict[str, str]:
    """Every agent a ticket may name, with its kind."""
    registry = load_agent_registry(settings.agents_path)
    return {name: registry.resolve(name).kind.value for name in registry.names()}


def verify_archive(path: Path) -> list[str]:
    """Every problem of an archive against its manifest (none: it is intact)."""
    from swarmd.outputs import verify_archive as check

    return check(path)


def refuse_on_postgres(settings: Settings, verb: str) -> None:
    """``backup`` and ``restore`` copy a home's SQLite file; a fleet's database is not one."""
    location = settings.store_location
    if isinstance(location, str):
        raise InputError(
            f"the queue is in PostgreSQL ({mask_database_url(location)}): {verb} it with "
            "PostgreSQL's own tools (pg_dump --format=custom, pg_restore); swarmd "
            f"{verb} copies a home's SQLite file"
        )


def backup(settings: Settings, path: Path, *, overwrite: bool) -> BackupResult:
    from swarmd.store.backup import backup_database

    refuse_on_postgres(settings, "backup")
    return backup_database(settings.layout.database, path, overwrite=overwrite)


def restore(settings: Settings, path: Path) -> RestoreResult:
    """Put a backup in place of the database; refused while a daemon runs on the home."""
    from swarmd.store.backup import restore_database

    refuse_on_postgres(settings, "restore")
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
    if not settings.store_exists:
        return []  # a new home: nothing submitted, and looking creates nothing
    async with await Store.open(settings.store_location) as store:
        return await store.list_tickets(state=TicketState(state) if state else None, limit=limit)


async def cancel(settings: Settings, ticket_id: int, task: str | None) -> list[str]:
    async with await open_existing_store(settings, ticket_id) as store:
        cancelled = [t.name for t in await store.cancel(ticket_id, task)]
    ring(settings.layout.doorbell)
    return cancelled


async def retry(settings: Settings, ticket_id: int, task: str | None) -> list[str]:
    async with await open_existing_store(settings, ticket_id) as store:
        retried = [t.name for t in await store.retry(ticket_id, task)]
    ring(settings.layout.doorbell)
    return retried


async def prune(
    settings: Settings, *, older_than: float | None, dry_run: bool, vacuum: bool
) -> PruneOutcome:
    """``swarmd prune``: retention now, as the daemon applies it once a day."""
    from swarmd.cli.prune_view import PruneOutcome
    from swarmd.daemon.retention import Pruner, PruneReport, RetentionPolicy

    if not settings.store_exists:
        return PruneOutcome(PruneReport(dry_run=dry_run), settings.home)  # a new home
    policy = RetentionPolicy.from_settings(settings)
    if older_than is not None:
        policy = policy.files_older_than(older_than)
    async with await Store.open(settings.store_location) as store:
        report = await Pruner(store, settings.layout, policy).prune(dry_run=dry_run)
        if not vacuum or dry_run:
            return PruneOutcome(report, settings.home)
        pid = running_daemon_pid(settings.layout)
        if pid is not None:
            who = f" (pid {pid})" if pid > 0 else ""
            raise DaemonRunningError(
                f"the files were pruned, but --vacuum needs the daemon{who} on "
                f"{settings.home} stopped: it rewrites the whole database"
            )
        # Holding the home's lock keeps a daemon from starting while the file is rewritten.
        lock = HomeLock(settings.layout.lock)
        lock.acquire()
        try:
            shrunk = await store.convert_to_incremental()
        finally:
            lock.release()
    return PruneOutcome(report, settings.home, vacuum_bytes=shrunk)
