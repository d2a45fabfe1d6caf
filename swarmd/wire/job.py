"""The job the daemon hands a worker: everything one attempt needs, as plain typed data.

Sent once as the channel's ``job`` message (``Job.to_dict``) and rebuilt by the worker
(``Job.from_dict``) without importing anything heavy: the provider settings an llm worker
needs travel as ``LLMSettings``, which the llm agent turns into the router's configuration.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from swarmd.wire.agent import AgentDef


@dataclass(frozen=True, slots=True)
class EndpointSettings:
    """One provider's endpoint: its base URL, key and extra headers."""

    base_url: str
    api_key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LLMSettings:
    """What an llm worker needs to build its router. Keys included: never logged."""

    endpoints: dict[str, EndpointSettings] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)  # usd per Mtok in, out
    fallback_on_rate_limit: bool = True
    request_timeout_seconds: float = 600.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LLMSettings:
        return cls(
            endpoints={
                name: EndpointSettings(
                    str(e["base_url"]), e.get("api_key"), dict(e.get("headers") or {})
                )
                for name, e in (data.get("endpoints") or {}).items()
            },
            aliases=dict(data.get("aliases") or {}),
            prices={
                model: (float(price[0]), float(price[1]))
                for model, price in (data.get("prices") or {}).items()
            },
            fallback_on_rate_limit=bool(data.get("fallback_on_rate_limit", True)),
            request_timeout_seconds=float(data.get("request_timeout_seconds", 600.0)),
        )


@dataclass(frozen=True, slots=True)
class Job:
    """Everything one attempt needs; the worker reads nothing else."""

    ticket_id: int
    task_id: int
    task: str
    attempt: int
    agent: AgentDef
    workspace: str
    archive_path: str
    deadline: float  # wall-clock seconds; the LLM budget ends here
    worktree: bool = False  # the workspace is a git worktree the daemon prepared and commits
    records: str = ""  # where swarmd keeps the attempt's own files; "": the workspace
    prompt: str | None = None
    command: tuple[str, ...] | None = None  # the task's own argv, else the agent's
    checks: tuple[dict[str, Any], ...] = ()
    inputs: tuple[tuple[str, str], ...] = ()  # (needed task, its workspace), in dependency order
    model_chain: tuple[str, ...] = ()
    heartbeat_seconds: float = 5.0
    fix_rounds: int = 0  # verify tasks: how many times a fix step may repair the workspace
    llm: LLMSettings | None = None  # llm, planner and verify agents only
    granted_env: dict[str, str] = field(default_factory=dict)  # variables a command may see
    # A command agent that reports its usage: usd per Mtok in, out, by provider/model.
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)  # metadata for manifest.json

    @property
    def records_dir(self) -> Path:
        """Where ``response.md``, ``stdout.txt`` and ``verify-report.txt`` go: beside a
        worktree, never in it (they are swarmd's, not the repository's)."""
        return Path(self.records or self.workspace)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        data = dict(data)
        data["agent"] = AgentDef.from_dict(data["agent"])
        data["command"] = tuple(data["command"]) if data.get("command") else None
        data["checks"] = tuple(data.get("checks") or ())
        data["inputs"] = tuple(tuple(pair) for pair in data.get("inputs") or ())
        data["model_chain"] = tuple(data.get("model_chain") or ())
        data["llm"] = LLMSettings.from_dict(data["llm"]) if data.get("llm") else None
        data["prices"] = {
            model: (float(price[0]), float(price[1]))
            for model, price in (data.get("prices") or {}).items()
        }
        return cls(**data)
