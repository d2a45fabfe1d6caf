"""One ``LISTEN`` connection per daemon: work made ready elsewhere wakes it at once.

The connection is not the pool's (a pooled connection is handed to whoever asks next) and
keeps TCP keepalives on. When it drops, it reconnects with a backoff and counts the
reconnect as news: notifications sent while it was gone are lost, so the daemon looks at
the whole queue once more. A slow tick (``SAFETY_POLL_SECONDS``) is news too, the last net
under a notification lost any other way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

import psycopg

from swarmd.logs import get_logger

CHANNEL = "swarmd_ready"
SAFETY_POLL_SECONDS = 5.0

log = get_logger("swarmd.store.postgres")


class Listener:
    """Counts notifications on ``CHANNEL``; started by the first ``version()`` call."""

    def __init__(self, url: str, keepalives: Mapping[str, Any]) -> None:
        self._url = url
        self._keepalives = dict(keepalives)
        self._count = 0
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def version(self) -> int:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen(), name="listen")
        return self._count * 1_000_000 + int(time.monotonic() // SAFETY_POLL_SECONDS)

    async def _listen(self) -> None:
        pause = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=10, **self._keepalives
                )
            except psycopg.Error as exc:
                log.warning("listen_connect_failed", error=str(exc).strip().splitlines()[0])
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            try:
                await conn.execute(f"LISTEN {CHANNEL}")
                self._count += 1  # news: whatever was sent while we were not listening
                self.connected.set()
                pause = 0.1
                async for _ in conn.notifies():
                    self._count += 1
            except psycopg.Error as exc:
                log.warning("listen_connection_lost", error=str(exc).strip().splitlines()[0])
            finally:
                self.connected.clear()
                with contextlib.suppress(psycopg.Error):
                    await conn.close()
            await asyncio.sleep(pause)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
