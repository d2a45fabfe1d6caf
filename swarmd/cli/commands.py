"""What the CLI's commands do, as async functions over the store and the daemon.

Each returns plain data for ``cli.py`` to print. Short writes (submit, cancel, retry) go
straight to the database in their own transactions; the daemon notices them at once.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from swarmd.addresses import mask_database_url
from swarmd.agents.registry import AgentRegistry, load_agent_registry
from swarmd.cli.quoting import literal, printable
from swarmd.config import Settings
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


def require_database(settings: Settings, ticket_id: int) -> None:
    """A home with no database yet has no ticket ``ticket_id``: ``NotFoundError`` at once,
    before anything (a database, a log) is created looking for it."""
    if not settings.store_exists:
        raise NotFoundError(f"there is no ticket {ticket_id}")


async def open_existing_store(settings: Settings, ticket_id: int) -> Store:
    """The store, which must exist (see ``require_database``)."""
    require_database(settings, ticket_id)
    return await Store.open(settings.store_location)


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
