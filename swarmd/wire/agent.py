"""What an agent is: a kind plus the settings that kind needs. Shared by daemon and worker."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any


class AgentKind(enum.StrEnum):
    ECHO = "echo"  # writes its prompt to a file: the offline test agent
    COMMAND = "command"  # runs an argv: any command-line agent
    LLM = "llm"  # asks the model chain and writes the file blocks of its reply
    VERIFY = "verify"  # runs deterministic checks
    PLANNER = "planner"  # an llm agent whose reply is a task graph


class ReplyMode(enum.StrEnum):
    """What a command agent's reply (its stdout, or the answer its usage format carries) is."""

    TEXT = "text"  # kept as it is
    FILES = "files"  # its <file path=...> blocks are written into the workspace too


class UsageFormat(enum.StrEnum):
    """How a command agent reports its model, tokens and cost on stdout."""

    CLAUDE_JSON = "claude-json"  # `claude -p --output-format json`: one result object
    CODEX_JSON = "codex-json"  # `codex exec --json`: JSON lines of events


@dataclass(frozen=True, slots=True)
class AgentDef:
    name: str
    kind: AgentKind
    command: tuple[str, ...] | None = None
    system_prompt: str | None = None
    model: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()  # variables a command agent is granted, by name
    timeout_seconds: float | None = None
    max_tokens: int = 4096
    reply: ReplyMode = ReplyMode.TEXT  # command agents only
    usage: UsageFormat | None = None  # command agents only

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentDef:
        return cls(
            name=data["name"],
            kind=AgentKind(data["kind"]),
            command=tuple(data["command"]) if data.get("command") else None,
            system_prompt=data.get("system_prompt"),
            model=tuple(data["model"]) if data.get("model") else None,
            env=tuple(data.get("env") or ()),
            timeout_seconds=data.get("timeout_seconds"),
            max_tokens=int(data.get("max_tokens", 4096)),
            reply=ReplyMode(data.get("reply") or ReplyMode.TEXT),
            usage=UsageFormat(data["usage"]) if data.get("usage") else None,
        )
