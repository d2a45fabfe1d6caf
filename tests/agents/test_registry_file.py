"""The daemon's view of agents.toml follows the file: changes read, breakage reported once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swarmd.agents.registry import AgentRegistry
from swarmd.agents.registry_file import AgentRegistryFile, UnknownAgentError
from swarmd.errors import ConfigError, TicketError

WRITER = '[agents.writer]\nkind = "llm"\n'
CODER = '[agents.coder]\nkind = "command"\ncommand = ["true"]\n'


class Reports:
    def __init__(self) -> None:
        self.reloads: list[list[str]] = []
        self.errors: list[str] = []

    def reloaded(self, registry: AgentRegistry) -> None:
        self.reloads.append(registry.names())

    def invalid(self, error: ConfigError) -> None:
        self.errors.append(str(error))


@pytest.fixture
def reports() -> Reports:
    return Reports()


def watched(path: Path, reports: Reports) -> AgentRegistryFile:
    return AgentRegistryFile(path, on_reload=reports.reloaded, on_invalid=reports.invalid)


def rewrite(path: Path, text: str) -> None:
    """Replace the file as editors do (a new inode), so the change shows however fast."""
    temp = path.with_suffix(".new")
    temp.write_text(text)
    os.replace(temp, path)


def test_an_agent_added_to_the_file_resolves_at_once(tmp_path: Path, reports: Reports) -> None:
    path = tmp_path / "agents.toml"
    path.write_text(WRITER)
    agents = watched(path, reports)

    rewrite(path, WRITER + CODER)

    assert agents.resolve("coder").command == ("true",)
    assert reports.reloads == [["coder", "command", "echo", "llm", "planner", "verify", "writer"]]


def test_a_file_created_after_start_is_read(tmp_path: Path, reports: Reports) -> None:
    path = tmp_path / "agents.toml"
    agents = watched(path, reports)

    path.write_text(CODER)

    assert agents.resolve("coder").name == "coder"


def test_an_unchanged_file_is_not_read_again(tmp_path: Path, reports: Reports) -> None:
    path = tmp_path / "agents.toml"
    path.write_text(WRITER)
    agents = watched(path, reports)

    assert agents.refresh() is False
    agents.resolve("writer")
    assert reports.reloads == []


def test_an_invalid_file_keeps_the_last_good_registry_and_is_reported_once(
    tmp_path: Path, reports: Reports
) -> None:
    path = tmp_path / "agents.toml"
    path.write_text(WRITER)
    agents = watched(path, reports)

    rewrite(path, "[agents.writer\n")
    for _ in range(3):
        agents.refresh()

    assert agents.resolve("writer").name == "writer"
    assert len(reports.errors) == 1
    assert "is not valid TOML" in reports.errors[0]


def test_the_next_change_after_an_invalid_file_is_read_and_reported_again(
    tmp_path: Path, reports: Reports
) -> None:
    path = tmp_path / "agents.toml"
    path.write_text(WRITER)
    agents = watched(path, reports)
    rewrite(path, "[agents.writer\n")
    agents.refresh()

    rewrite(path, '[agents.x]\nkind = "robot"\n')
    agents.refresh()
    rewrite(path, CODER)

    assert agents.resolve("coder").name == "coder"
    assert len(reports.errors) == 2 and "kind must be" in reports.errors[1]


def test_reload_reads_the_file_even_when_its_stat_looks_unchanged(
    tmp_path: Path, reports: Reports
) -> None:
    path = tmp_path / "agents.toml"
    path.write_text(WRITER)
    agents = watched(path, reports)
    before = os.stat(path)
    # Same inode, same size, same modification time: only a forced read sees it.
    path.write_text(WRITER.replace("writer", "author"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    assert agents.refresh() is False
    assert agents.reload() is True
    assert agents.registry.names()[0] == "author"


def test_an_unknown_agent_names_it_and_the_daemons_file(tmp_path: Path) -> None:
    path = tmp_path / "agents.toml"
    path.write_text(WRITER)
    agents = AgentRegistryFile(path)

    with pytest.raises(UnknownAgentError) as caught:
        agents.resolve("ghost")

    assert isinstance(caught.value, TicketError)
    assert str(caught.value) == (
        f"unknown agent 'ghost': the daemon's agent registry {path} does not define it "
        "(known: command, echo, llm, planner, verify, writer); define it there and retry the task"
    )


def test_an_invalid_file_at_start_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "agents.toml"
    path.write_text("[agents.writer\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        AgentRegistryFile(path)
