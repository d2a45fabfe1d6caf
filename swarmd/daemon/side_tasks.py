"""What every side task of the daemon shares (the metrics exporter, retention, the alerts,
the agents' watch, the dashboard): a failure is loud, and stops the daemon."""

from __future__ import annotations

import asyncio

from swarmd.logs import get_logger

log = get_logger("swarmd.daemon.serve")


def stop_when_failed(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """A side task's done callback: a failure is logged loudly and stops the daemon."""
    if task.cancelled() or task.exception() is None:
        return
    log.error("side_task_failed", task=task.get_name(), exc_info=task.exception())
    stop.set()
