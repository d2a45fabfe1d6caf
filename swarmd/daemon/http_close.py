"""Stopping one of the daemon's small HTTP servers (the metrics exporter, the dashboard)."""

from __future__ import annotations

import asyncio
from typing import Any


async def close_server(server: asyncio.Server, connections: set[asyncio.Task[Any]]) -> None:
    """Stop listening, end every open connection, and wait until all are gone."""
    server.close()
    # Python 3.11's Server.close() leaves accepted connections open: end them here.
    for task in list(connections):
        task.cancel()
    await asyncio.gather(*connections, return_exceptions=True)
    await server.wait_closed()
