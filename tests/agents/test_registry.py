from pathlib import Path

import pytest

from swarmd.agents.registry import load_agent_registry
from swarmd.errors import ConfigError, TicketError
from swarmd.wire.agent import AgentKind


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agents.toml"
    path.write_text(text)
    return path


def test_missing_registry_means_builtins_only(tmp_path: Path) -> None:
    registry = load_agent_registry(tmp_path / "nope.toml")
    assert registry.names() == ["command", "echo", "llm", "planner", "verify"]


def test_named_command_and_llm_agents_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[agents.claude]
kind = "command"
command = ["claude", "-p", "{prompt}"]
env = ["ANTHROPIC_API_KEY"]
timeout_seconds = 1800

[agents.writer]
kind = "llm"
system_prompt = "Write well."
model = "anthropic/claude-sonnet-4-5"
""",
    )
    registry = load_agent_registry(path)
    claude = registry.resolve("claude")
    assert claude.kind is AgentKind.COMMAND and claude.env == ("ANTHROPIC_API_KEY",)
    writer = registry.resolve("writer")
    assert writer.model == ("anthropic/claude-sonnet-4-5",)


def test_unknown_agent_is_a_ticket_error_listing_known_ones(tmp_path: Path) -> None:
    with pytest.raises(TicketError, match=r"unknown agent 'ghost'.*echo"):
        load_agent_registry(tmp_path / "none.toml").resolve("ghost")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[agents.echo]\nkind = "command"\ncommand = ["x"]\n', "shadows a built-in"),
        ('[agents.x]\nkind = "robot"\n', "kind must be"),
        ('[agents.x]\nkind = "command"\n', "needs command"),
        ('[agents.x]\nkind = "llm"\nmodel = "gpt4"\n', "provider/model"),
        ('[agents.x]\nkind = "llm"\ntemperature = 1\n', "unknown field 'temperature'"),
        ("[agents.x\n", "not valid TOML"),
    ],
)
def test_invalid_registry_is_a_config_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_agent_registry(write(tmp_path, text))
