"""The daemon's queue of delivery archives: when a ticket finishes, its tasks' archives are
merged into one (written by ``swarmd.outputs.delivery``).

Runs beside the supervisor loop, off its path: each delivery is a named task whose packing
happens in a thread, and ``drain()`` awaits them all before the daemon exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swarmd.daemon.repo_tasks import RepoTasks
from swarmd.errors import GitError, SwarmdError
from swarmd.home import HomeLayout
from swarmd.logs import get_logger
from swarmd.models import Task, TaskState, Ticket, TicketState
from swarmd.outputs import (
    TaskArchiveRef,
    verify_archive,
    write_delivery_archive,
    write_task_archive,
)
from swarmd.store import Store

log = get_logger("swarmd.daemon.delivery_queue")


class DeliveryQueue:
    """Delivery archives, built off the loop, once per finish of a ticket.

    ``schedule()`` is called as a ticket finishes; ``reconcile()`` finds finished tickets
    whose delivery was never written (the daemon died in between, or the ticket finished
    in another process: a cancel from the command line) and schedules them. A delivery is
    recorded in the store once written, so a crash at any point leads to one more build,
    never to none; one that fails is recorded as a ``delivery_failed`` event. Either way
    ``on_settled`` is called with the ticket's id once the store says so: the followers
    waiting on it (``swarmd submit --wait``) are told at once.
    """

    def __init__(
        self,
        store: Store,
        layout: HomeLayout,
        *,
        only_ticket: int | None = None,
        repos: RepoTasks | None = None,
        on_settled: Callable[[int], None] | None = None,
    ) -> None:
        self._repos = repos
        self._on_settled = on_settled or (lambda _ticket_id: None)
        self._store = store
        self._layout = layout
        self._only_ticket = only_ticket
        self._running: set[asyncio.Task[None]] = set()
        self._in_flight: set[int] = set()
        self._failed: set[int] = set()  # not tried again until the next start-up

    def schedule(self, ticket_id: int, state: TicketState, *, check_tasks: bool = False) -> None:
        if ticket_id in self._in_flight:
            return
        self._in_flight.add(ticket_id)
        task = asyncio.create_task(
            self.deliver(ticket_id, state, check_tasks=check_tasks), name=f"delivery-{ticket_id}"
        )
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        task.add_done_callback(lambda _: self._in_flight.discard(ticket_id))

    async def reconcile(self) -> int:
        """Schedule every finished ticket that has no delivery yet; how many were found."""
        found = 0
        for ticket_id in await self._store.undelivered_tickets():
            if ticket_id in self._in_flight or ticket_id in self._failed:
                continue
            if self._only_ticket is not None and ticket_id != self._only_ticket:
                continue
            ticket = await self._store.get_ticket(ticket_id)
            if ticket.state.is_terminal:
                log.info("delivery_missing", ticket=ticket_id, state=ticket.state.value)
                self.schedule(ticket_id, ticket.state, check_tasks=True)
                found += 1
        return found

    async def deliver(
        self, ticket_id: int, state: TicketState, *, check_tasks: bool = False
    ) -> None:
        """Write ``outputs/<ticket>/delivery.tar.gz``; a failure is logged, never raised.

        With ``check_tasks``, a succeeded task's archive that is missing or fails its
        manifest is first built again from the task's workspace, when that is still there.
        """
        try:
            ticket = await self._store.get_ticket(ticket_id)
            tasks = await self._store.list_tasks(ticket_id)
            refs = []
            for task in tasks:
                archive = self._layout.task_archive(ticket_id, task.name)
                if check_tasks and task.state is TaskState.SUCCEEDED:
                    await self._repair_task_archive(ticket_id, task)
                delivered = task.state is TaskState.SUCCEEDED and archive.exists()
                refs.append(
                    TaskArchiveRef(
                        name=task.name,
                        state=task.state.value,
                        archive=archive if delivered else None,
                        error=task.last_error,
                    )
                )
            dest = self._layout.delivery_archive(ticket_id)
            meta: dict[str, Any] = {"id": ticket.id, "title": ticket.title, "state": state.value}
            with tempfile.TemporaryDirectory(prefix="swarmd-delivery-") as staging:
                if self._repos is not None:
                    part, repository = await self._repository_part(ticket, tasks, Path(staging))
                    refs.extend([part] if part is not None else [])
                    meta.update({"repository": repository} if repository else {})
                info = await asyncio.to_thread(write_delivery_archive, dest, refs, ticket=meta)
            await self._store.mark_delivered(ticket_id, state)
            if self._repos is not None:
                await self._repos.clean_up(ticket_id, tasks)
        except (SwarmdError, OSError) as exc:
            self._failed.add(ticket_id)
            log.error("delivery_failed", ticket=ticket_id, error=str(exc))
            with contextlib.suppress(SwarmdError):
                await self._store.record_event(
                    "delivery_failed", ticket_id=ticket_id, error=str(exc)
                )
            self._on_settled(ticket_id)
            return
        log.info(
            "delivery_written",
            ticket=ticket_id,
            path=str(info.path),
            files=info.file_count,
            bytes=info.total_bytes,
        )
        self._on_settled(ticket_id)

    async def _repository_part(
        self, ticket: Ticket, tasks: list[Task], staging: Path
    ) -> tuple[TaskArchiveRef | None, dict[str, Any] | None]:
        """A repository ticket's bundle and patches; a failed push or pull request is
        written into the delivery's manifest and logged, and the rest is still delivered."""
        assert self._repos is not None
        try:
            return await self._repos.deliver(ticket, tasks, staging)
        except GitError as exc:
            log.error("repository_delivery_failed", ticket=ticket.id, error=str(exc))
            return None, {"error": str(exc)}

    async def _repair_task_archive(self, ticket_id: int, task: Task) -> None:
        archive = self._layout.task_archive(ticket_id, task.name)
        if archive.exists():
            try:
                problems = await asyncio.to_thread(verify_archive, archive)
            except SwarmdError as exc:
                problems = [str(exc)]
            if not problems:
                return
        workspace = self._layout.workspace(ticket_id, task.name)
        if not workspace.is_dir():
            log.warning("task_archive_lost", ticket=ticket_id, task=task.name)
            return
        attempts = await self._store.list_attempts(task.id)
        last = attempts[-1] if attempts else None
        manifest = {
            "ticket": ticket_id,
            "task": task.name,
            "agent": task.agent,
            "attempt": last.number if last else None,
            "started_at": last.started_at if last else None,
            "rebuilt": True,
        }
        await asyncio.to_thread(write_task_archive, workspace, archive, manifest=manifest)
        log.warning("task_archive_rebuilt", ticket=ticket_id, task=task.name)

    async def drain(self) -> None:
        await asyncio.gather(*self._running, return_exceptions=True)
