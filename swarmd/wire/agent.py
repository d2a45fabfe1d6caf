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


@dataclass(frozen=True, slots=True)
class AgentDef:
    name: str
    kind: AgentKind
    command: tuple[str, ...] | None = None
    system_prompt: str | None = None
    model: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()  # secret variables a command agent is granted
    timeout_seconds: float | None = None
    max_tokens: int = 4096

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
        )
