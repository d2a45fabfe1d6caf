"""How the commands read: ``status`` at 80 columns and in a pipe, ``config`` in ``.env`` form,
``agents`` with a header, ``--help`` without placeholders, every problem of an archive."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from swarmd.models import ExitReason, TaskSpec, TicketSpec
from swarmd.store import Store
from tests.support.cli import Daemon, read_store, swarmd_says, write_ticket

SECRET = "sk-test-abcdefghijklmnop7777"
COMMANDS = [
    "run",
    "submit",
    "run-ticket",
    "status",
    "tickets",
    "show",
    "cancel",
    "retry",
    "logs",
    "config",
    "agents",
    "verify-archive",
    "doctor",
    "backup",
    "restore",
]


def one_task(name: str) -> TicketSpec:
    return TicketSpec(title=name, tasks=(TaskSpec(name=name, agent="echo", prompt="p"),))


async def queue_of_every_kind(store: Store) -> None:
    """Tickets whose attempts ended every way, and tasks left in several states."""
    for name, ending in (("ok", "ok"), ("bad", "fail"), ("cut", "interrupt"), ("gone", "cancel")):
        await store.submit_ticket(one_task(name), default_max_attempts=1)
        claimed = await store.claim_ready_task()
        assert claimed is not None
        token = claimed.attempt.token
        if ending == "ok":
            await store.complete_attempt(token)
        elif ending == "fail":
            await store.fail_attempt(token, reason=ExitReason.EXIT_CODE, error="exit 3")
        elif ending == "interrupt":
            await store.interrupt_attempt(token)
        else:
            await store.cancel(claimed.task.ticket_id)
            await store.interrupt_attempt(token, reason=ExitReason.CANCELLED)
    await store.submit_ticket(
        TicketSpec(
            title="pair",
            tasks=(TaskSpec(name="a", prompt="p"), TaskSpec(name="b", prompt="p", needs=("a",))),
        )
    )


@pytest.fixture
def busy_home(home: Path) -> Path:
    read_store(home, queue_of_every_kind)
    return home


def test_status_at_80_columns_keeps_each_label_beside_its_number(
    busy_home: Path, swarmd_env: dict[str, str]
) -> None:
    # No terminal: rich reads the width from COLUMNS, as a pipe to `less` or a script gets it.
    env = {**swarmd_env, "COLUMNS": "80", "SWARMD_MIN_FREE_MEMORY_MB": str(2**24)}
    daemon = Daemon(env, busy_home)  # its gate holds: the queue stays as it was seeded
    try:
        daemon.start()
        result = swarmd_says("status", env=env)
    finally:
        daemon.stop()

    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), result.stdout
    assert not [line for line in lines if re.fullmatch(r"\s*[\d.%$,]+\s*", line)], result.stdout
    assert "queue: 1 blocked, 2 ready, 1 succeeded, 1 dead, 1 cancelled" in lines
    assert "models: no model calls yet" in lines
    [five] = [i for i, line in enumerate(lines) if line.startswith("last 5m: ")]
    assert lines[five + 1].startswith(" " * 9)  # a continuation, indented under its label


def test_status_names_every_attempt_so_the_parts_add_up(
    busy_home: Path, swarmd_env: dict[str, str]
) -> None:
    result = swarmd_says("status", env={**swarmd_env, "COLUMNS": "200"})

    [five] = [line for line in result.stdout.splitlines() if line.startswith("last 5m: ")]
    assert "4 attempts (1 ok, 1 failed, 2 interrupted or cancelled)" in five


def test_status_json_counts_the_attempts_cut_short(
    busy_home: Path, swarmd_env: dict[str, str]
) -> None:
    window = json.loads(swarmd_says("status", "--json", env=swarmd_env).stdout)["throughput"]["5m"]

    assert window["finished"] == 4
    parts = window["succeeded"] + window["failed"] + window["interrupted_or_cancelled"]
    assert parts == window["finished"]


def test_status_watch_without_a_terminal_prints_one_plain_snapshot_per_interval(
    busy_home: Path, swarmd_env: dict[str, str]
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarmd", "status", "--watch", "--interval", "1"],
        env=swarmd_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2.5)  # the behaviour under test is a rate: two or three snapshots by now
    finally:
        proc.send_signal(signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=10)

    assert "Traceback" not in stderr
    snapshots = [line for line in stdout.splitlines() if line.startswith("-- ")]
    assert 2 <= len(snapshots) <= 3, stdout
    assert stdout.count("daemon: not running") == len(snapshots)
    assert "\x1b" not in stdout  # no cursor movement, no colour: plain text


def test_config_prints_the_names_users_set_with_secrets_masked(
    swarmd_env: dict[str, str], tmp_path: Path
) -> None:
    spaced = tmp_path / "a home"
    env = {**swarmd_env, "OPENAI_API_KEY": SECRET, "SWARMD_HOME": str(spaced)}

    result = swarmd_says("config", env=env)

    lines = result.stdout.splitlines()
    assert SECRET not in result.stdout
    assert "OPENAI_API_KEY=****7777" in lines
    assert "SWARMD_MAX_CONCURRENT_WORKERS=10" in lines
    assert "SWARMD_FALLBACK_ON_RATE_LIMIT=true" in lines
    assert f'SWARMD_HOME="{spaced}"' in lines
    assert "# SWARMD_PRIMARY_MODEL=" in lines  # unset, as .env.example shows it
    assert not [line for line in lines if line.endswith(("{}", "[]", "None"))]


def test_agents_has_a_header_row(swarmd_env: dict[str, str]) -> None:
    result = swarmd_says("agents", env=swarmd_env)

    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["agent", "kind"]
    assert ["echo", "echo"] in rows[1:]


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_shows_no_bool_placeholders_and_no_braced_metavars(
    swarmd_env: dict[str, str], command: str
) -> None:
    args = (command, "--help") if command else ("--help",)

    result = swarmd_says(*args, env={**swarmd_env, "COLUMNS": "120"})

    assert result.returncode == 0, result.stderr
    assert "<bool>" not in result.stdout
    assert not re.search(r"\{\w+\}", result.stdout), result.stdout


def tampered_archive(tmp_path: Path, swarmd_env: dict[str, str]) -> Path:
    """A real task archive with two members changed and one member added under a bidi name."""
    ticket = {"title": "t", "tasks": [{"name": "w", "agent": "echo", "prompt": "hello"}]}
    assert (
        swarmd_says("run-ticket", str(write_ticket(tmp_path, ticket)), env=swarmd_env).returncode
        == 0
    )
    source = Path(swarmd_env["SWARMD_HOME"]) / "outputs" / "1" / "w.tar.gz"
    target = tmp_path / "tampered.tar.gz"
    with tarfile.open(source) as old, tarfile.open(target, "w:gz") as new:
        for member in old.getmembers():
            data = old.extractfile(member).read()  # type: ignore[union-attr]
            if member.name.startswith("files/"):
                data += b"tampered"
            member.size = len(data)
            new.addfile(member, io.BytesIO(data))
        extra = tarfile.TarInfo("files/evil\u202etxt.sh")
        extra.size = 1
        new.addfile(extra, io.BytesIO(b"x"))
    return target


def test_verify_archive_reports_every_problem_one_per_line_escaped(
    tmp_path: Path, swarmd_env: dict[str, str]
) -> None:
    archive = tampered_archive(tmp_path, swarmd_env)

    result = swarmd_says("verify-archive", str(archive), env=swarmd_env)

    assert result.returncode == 1
    lines = result.stderr.splitlines()
    problems = lines[1:]
    assert lines[0] == f"swarmd: {archive}: {len(problems)} problems"
    assert len(problems) >= 2
    assert any("does not match" in p or "bytes; the manifest says" in p for p in problems)
    assert any('"evil\\u202etxt.sh" is not in the manifest' in p for p in problems)
    assert "\u202e" not in result.stderr
