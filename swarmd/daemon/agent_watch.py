"""The running daemon's view of ``agents.toml``: re-read when the file changes and on
SIGHUP, each outcome logged; a broken file keeps the agents last read."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from swarmd.agents.registry import AgentLookup, AgentRegistry
from swarmd.agents.registry_file import AgentRegistryFile
from swarmd.daemon.side_tasks import side_task
from swarmd.errors import ConfigError
from swarmd.logs import get_logger

log = get_logger("swarmd.daemon.serve")

AGENTS_CHECK_SECONDS = 1.0


def watched_agent_registry(path: Path) -> AgentRegistryFile:
    """The agent registry of ``path``, re-read as it changes, each outcome logged."""

    def reloaded(registry: AgentRegistry) -> None:
        log.info("agents_reloaded", path=str(path), agents=registry.names())

    def invalid(error: ConfigError) -> None:
        log.error(
            "agents_file_invalid",
            path=str(path),
            error=str(error),
            detail="the daemon keeps the agents it last read",
        )

    return AgentRegistryFile(path, on_reload=reloaded, on_invalid=invalid)


@contextlib.asynccontextmanager
async def watching_agents(
    agents: AgentLookup, reload: asyncio.Event, stop: asyncio.Event
) -> AsyncIterator[None]:
    """While the block runs, re-read the agent registry when its file changes (checked every
    ``AGENTS_CHECK_SECONDS``) and whenever ``reload`` is set (SIGHUP).

    The daemon also checks the file before each claimed task's job is built; this side task
    makes a change (or a broken file) show in the log at once, claims or not.
    """
    if not isinstance(agents, AgentRegistryFile):
        yield
        return
    async with side_task(watch_agent_registry(agents, reload), name="watch-agents", stop=stop):
        yield


async def watch_agent_registry(agents: AgentRegistryFile, reload: asyncio.Event) -> None:
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(AGENTS_CHECK_SECONDS):
                await reload.wait()
        if reload.is_set():
            reload.clear()
            agents.reload()
        else:
            agents.refresh()
