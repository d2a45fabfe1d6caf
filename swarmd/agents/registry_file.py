"""The daemon's live view of ``agents.toml``: re-read when the file changes, kept when it breaks.

The CLI reads the file afresh for every command (``swarmd agents``, ``doctor``, ``submit``), so
an agent added while the daemon runs is accepted at once; the daemon must then know it too.
``AgentRegistryFile.resolve`` first compares the file's identity (inode, size, modification
time: one ``stat``) with the one last read, and re-reads it when they differ. ``reload()``
re-reads it whatever the ``stat`` says (SIGHUP, or an edit within the file system's timestamp
granularity). A file that fails to read or parse leaves the last good registry in place and
is reported once per change, through ``on_invalid``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from swarmd.agents.registry import AgentRegistry, load_agent_registry
from swarmd.errors import ConfigError, TicketError
from swarmd.wire.agent import AgentDef


class UnknownAgentError(TicketError):
    """A task names an agent that the daemon's registry does not define."""


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What one ``stat`` tells of a file's version; ``None`` fields when it does not exist."""

    inode: int | None
    size: int | None
    mtime_ns: int | None

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        try:
            info = os.stat(path)
        except OSError:
            # Missing or unreadable: the read that follows says which, once.
            return cls(None, None, None)
        return cls(info.st_ino, info.st_size, info.st_mtime_ns)


def _ignore(_: object) -> None:
    return None


class AgentRegistryFile:
    """The registry of ``path``, re-read when the file changes; the last good one otherwise."""

    def __init__(
        self,
        path: Path,
        *,
        on_reload: Callable[[AgentRegistry], None] = _ignore,
        on_invalid: Callable[[ConfigError], None] = _ignore,
    ) -> None:
        """Read ``path`` now; ``ConfigError`` if it is invalid (the daemon must not start)."""
        self.path = path
        self._on_reload = on_reload
        self._on_invalid = on_invalid
        self._identity = FileIdentity.of(path)
        self._registry = load_agent_registry(path)

    @property
    def registry(self) -> AgentRegistry:
        return self._registry

    def refresh(self) -> bool:
        """Re-read the file if it changed since the last read; whether a new registry holds."""
        identity = FileIdentity.of(self.path)
        if identity == self._identity:
            return False
        return self._read(identity)

    def reload(self) -> bool:
        """Re-read the file whatever its ``stat`` says; whether a new registry holds."""
        return self._read(FileIdentity.of(self.path))

    def resolve(self, name: str) -> AgentDef:
        """The agent ``name``, from the file as it is now; ``UnknownAgentError`` if undefined."""
        self.refresh()
        try:
            return self._registry.resolve(name)
        except TicketError:
            known = ", ".join(self._registry.names())
            raise UnknownAgentError(
                f"unknown agent {name!r}: the daemon's agent registry {self.path} does not "
                f"define it (known: {known}); define it there and retry the task"
            ) from None

    def names(self) -> list[str]:
        self.refresh()
        return self._registry.names()

    def _read(self, identity: FileIdentity) -> bool:
        # The identity is taken before the read: a write racing the read changes it again,
        # so the next check reads once more rather than keeping a half-written version.
        self._identity = identity
        try:
            registry = load_agent_registry(self.path)
        except ConfigError as exc:
            self._on_invalid(exc)
            return False
        self._registry = registry
        self._on_reload(registry)
        return True
