"""What every side task of the daemon shares (the metrics exporter, retention, the alerts,
the agents' watch, the dashboard): a failure is loud, and stops the daemon."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from swarmd.logs import get_logger

log = get_logger("swarmd.daemon.serve")


def stop_when_failed(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """A side task's done callback: a failure is logged loudly and stops the daemon."""
    if task.cancelled() or task.exception() is None:
        return
    log.error("side_task_failed", task=task.get_name(), exc_info=task.exception())
    stop.set()


@contextlib.asynccontextmanager
async def side_task(
    work: Coroutine[Any, Any, None], *, name: str, stop: asyncio.Event
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``work`` as the side task ``name`` while the block runs: a failure stops the
    daemon (``stop_when_failed``); the block's end cancels it and waits for it."""
    runner = asyncio.create_task(work, name=name)
    runner.add_done_callback(lambda task: stop_when_failed(task, stop))
    try:
        yield runner
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
