"""The job a worker runs and the result it reports: the wire contract of the channel.

Plain data in both directions, so the worker can rebuild it from JSON without importing
anything heavy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from swarmd.wire.agent import AgentDef


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
    prompt: str | None = None
    command: tuple[str, ...] | None = None  # the task's own argv, else the agent's
    checks: tuple[dict[str, Any], ...] = ()
    inputs: tuple[tuple[str, str], ...] = ()  # (needed task, its workspace), in dependency order
    model_chain: tuple[str, ...] = ()
    heartbeat_seconds: float = 5.0
    fix_rounds: int = 0  # verify tasks: how many times a fix step may repair the workspace
    llm: dict[str, Any] | None = None  # provider settings, keys included; llm agents only
    granted_env: dict[str, str] = field(default_factory=dict)  # secrets a command agent may see
    manifest: dict[str, Any] = field(default_factory=dict)  # metadata for manifest.json

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
        return cls(**data)


@dataclass(frozen=True, slots=True)
class AgentResult:
    """What an agent reports: success, or an error and whether another attempt may help."""

    ok: bool
    error: str | None = None
    retryable: bool = True
    details: dict[str, Any] = field(default_factory=dict)

    def to_message(self) -> dict[str, Any]:
        return {
            "type": "result",
            "ok": self.ok,
            "error": self.error,
            "retryable": self.retryable,
            "result": self.details,
        }
