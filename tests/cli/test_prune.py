"""``swarmd prune`` through real ``python -m swarmd`` processes: its list, its dry run, the
space freed, ``show`` after it, its JSON, and one sentence with exit 2 for a bad age."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from swarmd.cli.doctor import Level, check_disk
from swarmd.home import HomeLayout
from tests.support.cli import cli_env, swarmd, write_ticket

ECHO_TICKET = {"title": "greeting", "tasks": [{"name": "hello", "agent": "echo", "prompt": "hi"}]}


def run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    result = swarmd(*args, env=env, timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize("age", ["-1", "abc", "1e999", "7", "1.5d", "999999999w", ""])
def test_a_bad_age_is_one_sentence_and_exit_2_with_nothing_written(
    tmp_path: Path, age: str
) -> None:
    home = tmp_path / "home"

    code, out, err = run("prune", f"--older-than={age}", env=cli_env(home))

    assert code == 2
    assert out == ""
    assert err.startswith("swarmd: --older-than must be a whole number and a unit")
    assert len(err.strip().splitlines()) <= 2  # one sentence (rich may wrap it)
    assert not home.exists()


@pytest.mark.parametrize("age", ["7d", "12h", "0", "30m", "2w"])
def test_good_ages_on_a_new_home_prune_nothing(tmp_path: Path, age: str) -> None:
    home = tmp_path / "home"

    code, out, _ = run("prune", "--older-than", age, "--dry-run", env=cli_env(home))

    assert code == 0
    assert out.splitlines() == ["nothing to prune", "would free 0 bytes"]
    assert not (home / "swarmd.db").exists()


def test_prune_lists_removes_and_show_says_so(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = cli_env(home)
    ticket = write_ticket(tmp_path, ECHO_TICKET)
    code, _, err = run("run-ticket", str(ticket), "--wait", env=env)
    assert code == 0, err
    layout = HomeLayout(home)
    files = [
        layout.ticket_workspaces(1),
        layout.ticket_attempt_logs(1),
        layout.task_archive(1, "hello"),
        layout.delivery_archive(1),
    ]
    assert all(path.exists() for path in files)

    # Just finished: nothing is due under the default limits.
    code, out, _ = run("prune", env=env)
    assert (code, out.splitlines()[0]) == (0, "nothing to prune")

    code, dry, _ = run("prune", "--older-than", "0", "--dry-run", env=env)
    assert code == 0
    assert all(path.exists() for path in files)
    assert "would remove work/1 (ticket 1, workspaces," in dry
    assert "would remove outputs/1/delivery.tar.gz (ticket 1, deliveries," in dry

    code, out, _ = run("prune", "--older-than", "0", env=env)
    assert code == 0
    assert out.replace("removed", "would remove").replace("freed", "would free") == dry
    assert not any(path.exists() for path in files)

    code, shown, _ = run("show", "1", env=env)
    assert code == 0
    assert "files pruned: archives, attempt logs, deliveries, workspaces" in " ".join(shown.split())
    code, shown_json, _ = run("show", "1", "--json", env=env)
    assert set(json.loads(shown_json)["pruned"]["kinds"]) == {
        "archives",
        "attempt_logs",
        "deliveries",
        "workspaces",
    }

    code, again, _ = run("prune", "--older-than", "0", "--json", env=env)
    report = json.loads(again)
    assert (code, report["removed"], report["freed_bytes"]) == (0, [], 0)


def test_retention_settings_are_checked(tmp_path: Path) -> None:
    env = {**cli_env(tmp_path / "home"), "SWARMD_RETENTION_WORKSPACES_DAYS": "-1"}

    code, _, err = run("prune", "--dry-run", env=env)

    assert code == 78
    assert "SWARMD_RETENTION_WORKSPACES_DAYS" in err


@pytest.mark.parametrize(
    ("free_mb", "level"), [(300, Level.FAIL), (1500, Level.WARN), (3000, Level.OK)]
)
def test_doctor_warns_before_the_disk_gate_holds(
    tmp_path: Path, free_mb: int, level: Level
) -> None:
    finding = check_disk(tmp_path, lambda _: (10 * 2**30, 0, free_mb * 2**20), 1024)

    assert finding.level is level
    if level is Level.FAIL:
        assert "SWARMD_MIN_FREE_DISK_MB=1024" in finding.detail


def test_vacuum_converts_an_older_database_and_shrinks_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    database = home / "swarmd.db"
    with sqlite3.connect(database) as conn:  # a table before swarmd's: auto_vacuum stays NONE
        conn.execute("CREATE TABLE padding (x)")
        conn.executemany("INSERT INTO padding VALUES (?)", [("x" * 3000,)] * 300)
    with sqlite3.connect(database) as conn:
        conn.execute("DELETE FROM padding")
    before = database.stat().st_size

    code, out, _ = run("prune", "--vacuum", env=cli_env(home))

    assert code == 0
    assert out.splitlines()[0] == "nothing to prune"
    assert database.stat().st_size < before // 4
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
