"""An unusable home is one sentence naming the path and the problem, exit 3, nothing written.

A home that is a file or lies under one, and one this user may not write, once failed deep
in logging or SQLite with a traceback and exit 1 (for ``swarmd run`` under systemd: a
restart loop on a traceback). The permission cases need a user the kernel checks: as root,
they run as ``nobody`` through ``setpriv``, keeping only the capability to read and search
(so the interpreter and the checkout stay reachable), never the one to write.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import cli_env, one_sentence, swarmd_says, write_ticket

ECHO_TICKET = {"title": "greeting", "tasks": [{"name": "hello", "agent": "echo", "prompt": "hi"}]}
WRITING = [("submit", "{ticket}"), ("run-ticket", "{ticket}"), ("run",)]
NOBODY = 65534


def command(args: tuple[str, ...], ticket: Path) -> list[str]:
    return [arg.format(ticket=ticket) for arg in args]


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("args", WRITING)
def test_a_home_that_is_a_file_exits_3_naming_it(tmp_path: Path, args: tuple[str, ...]) -> None:
    home = tmp_path / "home"
    home.write_text("not a directory\n")
    ticket = write_ticket(tmp_path, ECHO_TICKET)

    result = swarmd_says(*command(args, ticket), env=cli_env(home), timeout=30)

    assert result.returncode == 3, result.stderr
    message = one_sentence(result.stderr)
    assert f"home {home} (SWARMD_HOME) is a file, not a directory" in message
    assert "nothing was written" in message
    assert home.read_text() == "not a directory\n"
    assert tree(tmp_path) == ["home", "ticket.json"]


@pytest.mark.parametrize("args", WRITING)
def test_a_home_under_a_file_exits_3_naming_the_file(tmp_path: Path, args: tuple[str, ...]) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    home = blocker / "home"
    ticket = write_ticket(tmp_path, ECHO_TICKET)

    result = swarmd_says(*command(args, ticket), env=cli_env(home), timeout=30)

    assert result.returncode == 3, result.stderr
    message = one_sentence(result.stderr)
    assert f"home {home} (SWARMD_HOME) cannot be used: {blocker} is a file" in message
    assert tree(tmp_path) == ["blocker", "ticket.json"]


def test_status_on_a_home_that_is_a_file_exits_3_without_a_traceback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("")

    result = swarmd_says("status", env=cli_env(home))

    assert result.returncode == 3
    assert "is a file, not a directory" in one_sentence(result.stderr)


# -- permissions, checked by the kernel for a user other than root -----------------------------


def as_nobody() -> list[str]:
    """The prefix that runs a command as an unprivileged user, or skip saying why."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot drop to a user the kernel checks")
    return [
        setpriv,
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
    ]


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory anyone may enter and read (pytest's own are private to their owner),
    for the ticket file and the locked home."""
    with tempfile.TemporaryDirectory(prefix="swarmd-home-test-") as name:
        path = Path(name)
        path.chmod(0o755)
        yield path


@pytest.fixture
def locked_dir(open_dir: Path) -> Iterator[Path]:
    """A directory this user may enter and read but not write (mode 555, owned by root)."""
    path = open_dir / "locked"
    path.mkdir()
    path.chmod(0o555)
    yield path
    path.chmod(0o755)


def run_unprivileged(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*as_nobody(), sys.executable, "-m", "swarmd", *args],
        env={**env, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
        cwd="/",
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.mark.parametrize("args", WRITING)
def test_a_read_only_home_exits_3_naming_it(
    open_dir: Path, locked_dir: Path, args: tuple[str, ...]
) -> None:
    ticket = write_ticket(open_dir, ECHO_TICKET)

    result = run_unprivileged(command(args, ticket), cli_env(locked_dir))

    assert result.returncode == 3, result.stderr
    message = one_sentence(result.stderr)
    assert f"home {locked_dir} (SWARMD_HOME) cannot be used:" in message
    assert f"may not write {locked_dir} (uid {os.geteuid()}, mode 555)" in message
    assert tree(locked_dir) == []


@pytest.mark.parametrize("args", WRITING)
def test_a_home_that_cannot_be_created_exits_3_naming_the_parent(
    open_dir: Path, locked_dir: Path, args: tuple[str, ...]
) -> None:
    ticket = write_ticket(open_dir, ECHO_TICKET)
    home = locked_dir / "home"

    result = run_unprivileged(command(args, ticket), cli_env(home))

    assert result.returncode == 3, result.stderr
    message = one_sentence(result.stderr)
    assert f"home {home} (SWARMD_HOME) cannot be created:" in message
    assert f"may not write {locked_dir} (uid {os.geteuid()}, mode 555)" in message
    assert tree(locked_dir) == []


def test_a_home_without_any_permission_exits_3_for_reading_too(locked_dir: Path) -> None:
    locked_dir.chmod(0o000)

    result = run_unprivileged(["tickets"], cli_env(locked_dir))

    assert result.returncode == 3, result.stderr
    message = one_sentence(result.stderr)
    assert f"home {locked_dir} (SWARMD_HOME) cannot be used:" in message
    assert f"may not read or enter {locked_dir} (uid {os.geteuid()}, mode 0)" in message
