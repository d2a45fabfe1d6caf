"""The agent registry: the built-in agents plus the named ones declared in ``agents.toml``.

```toml
[agents.claude]
kind = "command"
command = ["claude", "-p", "{prompt}", "--output-format", "json"]
env = ["ANTHROPIC_API_KEY"]        # variables this command may see beyond its base environment
timeout_seconds = 1800
usage = "claude-json"              # read model, tokens and cost (and the answer) from stdout
reply = "files"                    # write the answer's <file path=...> blocks into the workspace

[agents.writer]
kind = "llm"
system_prompt = "You are a careful technical writer."
model = ["anthropic/claude-sonnet-4-5", "openai/gpt-4.1-mini"]
```

The daemon reads it through ``swarmd.agents.registry_file``, which re-reads it when it changes.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from swarmd.errors import ConfigError, TicketError
from swarmd.files import read_regular_file
from swarmd.wire.agent import AgentDef, AgentKind, ReplyMode, UsageFormat

PLANNER_SYSTEM_PROMPT = """\
You plan software and writing work for a swarm of agents. Answer with one JSON object and
nothing else: {"tasks": [{"name": "...", "prompt": "...", "needs": ["..."]}, ...]}.
Names are short identifiers (letters, digits, - and _). Each task's prompt must be complete on
its own: the agent sees only its prompt and the files of the tasks it needs. Split the goal
into at least five tasks where it allows, with real dependencies. Do not add a verify task:
one is added for you."""

LLM_SYSTEM_PROMPT = """\
You are one agent in a swarm. Do the task you are given. Write every file you produce as
<file path="relative/path">content</file>; paths are relative to your workspace."""

BUILTIN_AGENTS: dict[str, AgentDef] = {
    "echo": AgentDef(name="echo", kind=AgentKind.ECHO),
    "command": AgentDef(name="command", kind=AgentKind.COMMAND),
    "llm": AgentDef(name="llm", kind=AgentKind.LLM, system_prompt=LLM_SYSTEM_PROMPT),
    "verify": AgentDef(name="verify", kind=AgentKind.VERIFY),
    "planner": AgentDef(
        name="planner", kind=AgentKind.PLANNER, system_prompt=PLANNER_SYSTEM_PROMPT
    ),
}

_ALLOWED_KEYS = {
    "kind",
    "command",
    "system_prompt",
    "model",
    "env",
    "timeout_seconds",
    "max_tokens",
    "reply",
    "usage",
}
_COMMAND_ONLY_KEYS = ("reply", "usage")

_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NEVER_GRANTED_PREFIXES = ("NOTIFY_SOCKET", "WATCHDOG_")
"""Variables no agent may be granted: with them a command could speak to systemd for the
daemon (readiness, stopping, the watchdog)."""


class AgentLookup(Protocol):
    """What the daemon's side needs of a registry: one agent by name."""

    def resolve(self, name: str) -> AgentDef: ...


class AgentRegistry:
    """Looks agents up by name; built-ins cannot be shadowed."""

    def __init__(self, named: Mapping[str, AgentDef] | None = None) -> None:
        self._agents = {**(named or {}), **BUILTIN_AGENTS}

    def resolve(self, name: str) -> AgentDef:
        try:
            return self._agents[name]
        except KeyError:
            known = ", ".join(sorted(self._agents))
            raise TicketError(f"unknown agent {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._agents)


MAX_REGISTRY_BYTES = 2**20


def load_agent_registry(path: Path) -> AgentRegistry:
    """Read ``agents.toml``; a missing file means only the built-ins."""
    try:
        raw = read_regular_file(path, limit=MAX_REGISTRY_BYTES)
    except FileNotFoundError:
        return AgentRegistry()
    except OSError as exc:
        raise ConfigError(f"cannot read the agent registry {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"the agent registry {path} is not valid TOML: {exc}") from exc
    agents = data.get("agents", {})
    if not isinstance(agents, dict):
        raise ConfigError(f"{path}: [agents] must be a table of agent tables")
    return AgentRegistry({name: _parse_agent(path, name, body) for name, body in agents.items()})


def _parse_agent(path: Path, name: str, body: Any) -> AgentDef:
    where = f"{path}: agent {name!r}"
    if name in BUILTIN_AGENTS:
        raise ConfigError(f"{where} shadows a built-in agent; choose another name")
    if not isinstance(body, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(body) - _ALLOWED_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    try:
        kind = AgentKind(body.get("kind", ""))
    except ValueError:
        raise ConfigError(f"{where}: kind must be command or llm") from None
    if kind not in (AgentKind.COMMAND, AgentKind.LLM):
        raise ConfigError(f"{where}: kind must be command or llm")
    command = body.get("command")
    if kind is AgentKind.COMMAND and not (
        isinstance(command, list) and command and all(isinstance(a, str) for a in command)
    ):
        raise ConfigError(f"{where}: a command agent needs command = [argv strings]")
    model = body.get("model")
    if isinstance(model, str):
        model = [model]
    if model is not None and not (
        isinstance(model, list) and all(isinstance(m, str) and "/" in m for m in model)
    ):
        raise ConfigError(f"{where}: model must be provider/model or a list of them")
    timeout = body.get("timeout_seconds")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)):
        raise ConfigError(f"{where}: timeout_seconds must be a number")
    max_tokens = body.get("max_tokens", 4096)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigError(f"{where}: max_tokens must be a positive whole number")
    system_prompt = body.get("system_prompt")
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise ConfigError(f"{where}: system_prompt must be a string")
    reply, usage = _parse_command_output(where, kind, body)
    return AgentDef(
        name=name,
        kind=kind,
        command=tuple(command) if command else None,
        system_prompt=system_prompt or (LLM_SYSTEM_PROMPT if kind is AgentKind.LLM else None),
        model=tuple(model) if model else None,
        env=_parse_env(where, body.get("env", [])),
        timeout_seconds=float(timeout) if timeout is not None else None,
        max_tokens=max_tokens,
        reply=reply,
        usage=usage,
    )


def _parse_env(where: str, env: Any) -> tuple[str, ...]:
    if not (isinstance(env, list) and all(isinstance(e, str) for e in env)):
        raise ConfigError(f"{where}: env must be a list of variable names")
    for name in env:
        if not _VARIABLE_NAME.fullmatch(name):
            raise ConfigError(f"{where}: env entry {name!r} is not a variable name")
        if name.startswith(NEVER_GRANTED_PREFIXES):
            raise ConfigError(
                f"{where}: env may not grant {name!r}, systemd's variable for the daemon alone"
            )
    return tuple(env)


def _parse_command_output(
    where: str, kind: AgentKind, body: dict[str, Any]
) -> tuple[ReplyMode, UsageFormat | None]:
    """``reply`` and ``usage``: how a command agent's stdout is read."""
    if kind is not AgentKind.COMMAND:
        for key in _COMMAND_ONLY_KEYS:
            if key in body:
                raise ConfigError(f"{where}: {key} applies to command agents only")
        return ReplyMode.TEXT, None
    reply = body.get("reply", ReplyMode.TEXT.value)
    if reply not in tuple(ReplyMode):
        choices = " or ".join(repr(m.value) for m in ReplyMode)
        raise ConfigError(f"{where}: reply must be {choices}, not {reply!r}")
    usage = body.get("usage")
    if usage is not None and usage not in tuple(UsageFormat):
        choices = " or ".join(repr(f.value) for f in UsageFormat)
        raise ConfigError(f"{where}: usage must be {choices}, not {usage!r}")
    return ReplyMode(reply), UsageFormat(usage) if usage is not None else None
