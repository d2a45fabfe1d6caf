"""Running one ticket and following it to its end: ``run-ticket`` with a daemon or without
one (an in-process supervisor for that ticket alone, its fork server started before the
submit), ``--wait``'s following, and how the ticket ended.

The bodies of ``submit --wait`` and ``run-ticket`` (``swarmd.cli.waiting``) call these; the
other commands are ``swarmd.cli.commands``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from swarmd.cli.commands import open_existing_store, submit_file
from swarmd.cli.failures import FAILED_STATES, failure_lines, task_failures
from swarmd.cli.progress import ProgressPrinter, exit_code_for, follow_ticket
from swarmd.cli.quoting import literal, printable
from swarmd.config import OFFLINE_MODEL, Settings
from swarmd.errors import InputError
from swarmd.home import running_daemon_pid
from swarmd.models import TicketState
from swarmd.store import Store

if TYPE_CHECKING:
    from swarmd.spawn.spawners import WorkerSpawner


@dataclass(frozen=True, slots=True)
class RunOutcome:
    exit_code: int
    lines: list[str]


async def wait_for_ticket(
    settings: Settings, ticket_id: int, *, timeout: float | None
) -> TicketState | None:
    """Follow the ticket until it finishes; None when ``timeout`` passed first."""
    printer = ProgressPrinter()
    try:
        async with asyncio.timeout(timeout):
            ticket = await follow_ticket(
                settings.store_location,
                ticket_id,
                printer=printer,
                doorbell=settings.layout.doorbell,
            )
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


async def describe_outcome(settings: Settings, ticket_id: int) -> list[str]:
    """How a finished ticket ended: its counts, each failure with its log's tail, its outputs."""
    layout = settings.layout
    async with await Store.open(settings.store_location) as store:
        ticket = await store.get_ticket(ticket_id)
        tasks = await store.list_tasks(ticket_id)
        failed = [t for t in tasks if t.state in FAILED_STATES]
        attempts = {task.id: await store.list_attempts(task.id) for task in failed}
        delivery = await store.get_delivery(ticket_id)
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
    if delivery.error is not None and not delivery.written:
        lines.append(f"delivery failed: {printable(delivery.error, 2000)}")
    lines.extend(f"{label}: {printable(str(path))}" for label, path in outputs.items())
    return lines
