import json
import re
from pathlib import Path

import pytest

from swarmd.agents.registry import load_agent_registry
from swarmd.errors import ConfigError, TicketError
from swarmd.wire.agent import AgentDef, AgentKind, ReplyMode, UsageFormat


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


def test_a_command_agent_may_read_its_usage_and_write_its_reply_files(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[agents.claude]\nkind = "command"\ncommand = ["claude", "-p", "{prompt}"]\n'
        'usage = "claude-json"\nreply = "files"\n',
    )
    claude = load_agent_registry(path).resolve("claude")
    assert claude.usage is UsageFormat.CLAUDE_JSON
    assert claude.reply is ReplyMode.FILES


def test_a_command_agent_replies_text_and_reads_no_usage_by_default(tmp_path: Path) -> None:
    path = write(tmp_path, '[agents.x]\nkind = "command"\ncommand = ["x"]\n')
    x = load_agent_registry(path).resolve("x")
    assert (x.reply, x.usage) == (ReplyMode.TEXT, None)


def test_an_agent_definition_survives_the_trip_to_the_worker(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[agents.codex]\nkind = "command"\ncommand = ["codex", "exec", "--json", "{prompt}"]\n'
        'usage = "codex-json"\nreply = "files"\nenv = ["OPENAI_API_KEY", "HTTPS_PROXY"]\n',
    )
    codex = load_agent_registry(path).resolve("codex")
    assert AgentDef.from_dict(json.loads(json.dumps(codex.to_dict()))) == codex


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('reply = "json"', "reply must be 'text' or 'files', not 'json'"),
        ('usage = "gemini"', "usage must be 'claude-json' or 'codex-json', not 'gemini'"),
        ('env = ["NOTIFY_SOCKET"]', "may not grant 'NOTIFY_SOCKET'"),
        ('env = ["WATCHDOG_USEC"]', "may not grant 'WATCHDOG_USEC'"),
        ('env = ["A=B"]', "env entry 'A=B' is not a variable name"),
        ('max_tokens = "many"', "max_tokens must be a positive whole number"),
        ("system_prompt = 3", "system_prompt must be a string"),
    ],
)
def test_invalid_command_agent_fields_are_a_config_error(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, f'[agents.x]\nkind = "command"\ncommand = ["x"]\n{text}\n')
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_agent_registry(path)


@pytest.mark.parametrize("key", ["reply", "usage"])
def test_reply_and_usage_apply_to_command_agents_only(tmp_path: Path, key: str) -> None:
    path = write(tmp_path, f'[agents.x]\nkind = "llm"\n{key} = "files"\n')
    with pytest.raises(ConfigError, match=f"{key} applies to command agents only"):
        load_agent_registry(path)
