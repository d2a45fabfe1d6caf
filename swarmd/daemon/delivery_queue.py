"""The daemon's queue of delivery archives: when a ticket finishes, its tasks' archives are
merged into one (written by ``swarmd.outputs.delivery``).

Runs beside the supervisor loop, off its path: each delivery is a named task whose packing
happens in a thread, and ``drain()`` awaits them all before the daemon exits.
"""

from __future__ import annotations

import asyncio

from swarmd.errors import SwarmdError
from swarmd.home import HomeLayout
from swarmd.logs import get_logger
from swarmd.models import TaskState, TicketState
from swarmd.outputs import TaskArchiveRef, write_delivery_archive
from swarmd.store import Store

log = get_logger("swarmd.daemon.delivery_queue")


class DeliveryQueue:
    def __init__(self, store: Store, layout: HomeLayout) -> None:
        self._store = store
        self._layout = layout
        self._running: set[asyncio.Task[None]] = set()

    def schedule(self, ticket_id: int, state: TicketState) -> None:
        task = asyncio.create_task(self.deliver(ticket_id, state), name=f"delivery-{ticket_id}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def deliver(self, ticket_id: int, state: TicketState) -> None:
        """Write ``outputs/<ticket>/delivery.tar.gz``; a failure is logged, never raised."""
        try:
            ticket = await self._store.get_ticket(ticket_id)
            tasks = await self._store.list_tasks(ticket_id)
            refs = []
            for task in tasks:
                archive = self._layout.task_archive(ticket_id, task.name)
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
            info = await asyncio.to_thread(
                write_delivery_archive,
                dest,
                refs,
                ticket={"id": ticket.id, "title": ticket.title, "state": state.value},
            )
        except (SwarmdError, OSError) as exc:
            log.error("delivery_failed", ticket=ticket_id, error=str(exc))
            return
        log.info(
            "delivery_written",
            ticket=ticket_id,
            path=str(info.path),
            files=info.file_count,
            bytes=info.total_bytes,
        )

    async def drain(self) -> None:
        await asyncio.gather(*self._running, return_exceptions=True)
