"""The dashboard as one of the daemon's side tasks: opened, run and closed around a block."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterable

from swarmd.config import Settings
from swarmd.daemon.dashboard.logtail import LogTail
from swarmd.daemon.dashboard.server import DashboardServer
from swarmd.daemon.dashboard.snapshot import DaemonFacts, LiveStatus, SnapshotBuilder
from swarmd.logs import Redactor
from swarmd.store import Store


@contextlib.asynccontextmanager
async def running_dashboard(
    settings: Settings,
    live: LiveStatus,
    *,
    enabled: bool,
    started_at: float,
    secrets: Iterable[str],
    on_done: Callable[[asyncio.Task[None]], None],
) -> AsyncIterator[DashboardServer | None]:
    """Serve the dashboard as the side task ``dashboard`` while the block runs, when
    ``SWARMD_DASHBOARD_PORT`` is set (and ``enabled``: not for ``run-ticket``'s in-process
    daemon); yield None otherwise.

    It reads the queue through a store of its own (its own connection and thread), so its
    reads never wait in line with the supervisor's. ``secrets`` are scrubbed from everything
    it sends, as the log's redactor scrubs them.
    """
    if not enabled or not settings.dashboard_enabled or settings.dashboard_port is None:
        yield None
        return
    redactor = Redactor(secrets)
    store = await Store.open(settings.store_location)
    try:
        facts = DaemonFacts(
            pid=os.getpid(),
            started_at=started_at,
            home=str(settings.home),
            max_workers=settings.max_concurrent_workers,
            model_chain=settings.model_chain,
        )
        token = settings.dashboard_token.get_secret_value() if settings.dashboard_token else None
        server = DashboardServer(
            SnapshotBuilder(store, live, facts, redactor=redactor),
            LogTail(settings.layout.log, redactor),
            host=settings.dashboard_host,
            port=settings.dashboard_port,
            token=token,
        )
        await server.start()
        runner = asyncio.create_task(server.run(), name="dashboard")
        runner.add_done_callback(on_done)
        try:
            yield server
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await server.close()
    finally:
        await store.close()
