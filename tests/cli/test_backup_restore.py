"""``swarmd backup`` and ``swarmd restore``: consistent under load, and never destructive."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from swarmd.errors import InputError, StoreError
from swarmd.models import TaskSpec, TicketSpec
from swarmd.store import Store
from swarmd.store.backup import backup_database, check_database, restore_database
from tests.support.cli import Daemon, python_command, swarmd, wait_until

# Submits a one-task ticket about every 50 ms and appends each id once it is committed.
SUBMITTER = """
import asyncio, sys
from pathlib import Path
from swarmd.models import TaskSpec, TicketSpec
from swarmd.store import Store

async def main(db, out):
    async with await Store.open(Path(db)) as store:
        with open(out, "a") as ids:
            for i in range(100_000):
                task = TaskSpec(name="t", agent="command", command=("sh", "-c", "exit 0"))
                result = await store.submit_ticket(TicketSpec(title=f"load {i}", tasks=(task,)))
                ids.write(f"{result.ticket_id}\\n")
                ids.flush()
                await asyncio.sleep(0.05)  # a steady load, not a flood

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

# Commits tickets and dies without closing, so its commits are only in the write-ahead log.
DIE_WITH_COMMITS_IN_THE_LOG = """
import asyncio, os, sys
from pathlib import Path
from swarmd.models import TaskSpec, TicketSpec
from swarmd.store import Store

async def main(db, count):
    store = await Store.open(Path(db))
    for i in range(count):
        spec = TicketSpec(title=f"late {i}", tasks=(TaskSpec(name="t", prompt="p"),))
        await store.submit_ticket(spec)
    os._exit(0)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def committed(ids_file: Path) -> list[int]:
    if not ids_file.exists():
        return []
    return [int(line) for line in ids_file.read_text().splitlines() if line.strip()]


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def submit_tickets(db: Path, count: int) -> None:
    async def go() -> None:
        async with await Store.open(db) as store:
            for i in range(count):
                spec = TicketSpec(title=f"t{i}", tasks=(TaskSpec(name="t", prompt="p"),))
                await store.submit_ticket(spec)

    asyncio.run(go())


def test_backup_under_load_restores_every_ticket_committed_before_it(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, daemon: Daemon
) -> None:
    daemon.start()
    ids_file = tmp_path / "ids"
    db = home / "swarmd.db"
    submitter = subprocess.Popen(
        [*python_command(SUBMITTER), str(db), str(ids_file)], env=swarmd_env
    )
    try:
        wait_until(
            lambda: (
                len(committed(ids_file)) >= 20
                and query(db, "SELECT COUNT(*) FROM tickets WHERE state = 'succeeded'")[0][0] >= 5
            ),
            timeout=60,
        )
        before = committed(ids_file)
        result = swarmd("backup", str(tmp_path / "backup.db"), env=swarmd_env)
        wait_until(lambda: len(committed(ids_file)) >= len(before) + 5, timeout=30)
    finally:
        submitter.terminate()
        submitter.wait(timeout=30)
    assert result.returncode == 0, result.stderr

    restored_home = tmp_path / "restored"
    restored = swarmd(
        "restore",
        str(tmp_path / "backup.db"),
        env={**swarmd_env, "SWARMD_HOME": str(restored_home)},
    )

    assert restored.returncode == 0, restored.stderr
    check = check_database(restored_home / "swarmd.db")  # the full integrity_check
    assert check.ok, check.problems
    ids = {row[0] for row in query(restored_home / "swarmd.db", "SELECT id FROM tickets")}
    assert set(before) <= ids
    finished = query(
        restored_home / "swarmd.db", "SELECT COUNT(*) FROM tasks WHERE state = 'succeeded'"
    )
    assert finished[0][0] >= 5


def test_restore_refuses_while_a_daemon_runs_and_changes_nothing(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path, daemon: Daemon
) -> None:
    submit_tickets(home / "swarmd.db", 2)
    backup = backup_database(home / "swarmd.db", tmp_path / "backup.db").path
    submit_tickets(home / "swarmd.db", 1)
    daemon.start()

    result = swarmd("restore", str(backup), env=swarmd_env)

    assert result.returncode == 3
    message = " ".join(result.stderr.split())
    assert f"(pid {daemon.pid}) is running" in message and "stop it first" in message
    assert query(home / "swarmd.db", "SELECT COUNT(*) FROM tickets")[0][0] == 3
    assert not list(home.glob("swarmd.db.before-restore-*"))


def test_restore_keeps_the_replaced_database_openable_with_its_log(tmp_path: Path) -> None:
    db = tmp_path / "home" / "swarmd.db"
    submit_tickets(db, 2)
    backup = backup_database(db, tmp_path / "backup.db").path
    subprocess.run(
        [*python_command(DIE_WITH_COMMITS_IN_THE_LOG), str(db), "3"], check=True, timeout=60
    )
    assert db.with_name("swarmd.db-wal").stat().st_size > 0

    result = restore_database(backup, db)

    assert check_database(db).tickets == 2
    assert result.moved_aside is not None
    assert result.moved_aside.name.startswith("swarmd.db.before-restore-")
    assert check_database(result.moved_aside).tickets == 5
    assert not db.with_name("swarmd.db-wal").exists()
    assert not db.with_name("swarmd.db-shm").exists()


def test_restore_refuses_a_corrupt_backup_and_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "home" / "swarmd.db"
    submit_tickets(db, 1)
    before = db.read_bytes()
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"not a database at all" * 100)

    with pytest.raises(StoreError, match=r"failed its check.*nothing was changed"):
        restore_database(broken, db)

    assert db.read_bytes() == before
    assert sorted(p.name for p in db.parent.iterdir()) == ["swarmd.db"]


def test_backup_refuses_to_replace_a_file_unless_forced(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    submit_tickets(home / "swarmd.db", 1)
    dest = tmp_path / "backup.db"
    dest.write_text("precious")

    refused = swarmd("backup", str(dest), env=swarmd_env)
    assert refused.returncode == 2
    assert dest.read_text() == "precious"
    forced = swarmd("backup", str(dest), "--force", env=swarmd_env)

    assert forced.returncode == 0, forced.stderr
    assert check_database(dest).tickets == 1


def test_backup_into_a_directory_names_a_self_contained_file(tmp_path: Path) -> None:
    db = tmp_path / "home" / "swarmd.db"
    submit_tickets(db, 3)
    shelf = tmp_path / "shelf"
    shelf.mkdir()

    result = backup_database(db, shelf)

    assert result.path.parent == shelf and result.path.name.startswith("swarmd-")
    assert result.check.tickets == 3
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
    # A rollback journal, not WAL: the file alone is the whole database.
    assert query(result.path, "PRAGMA journal_mode") == [("delete",)]
    assert sorted(p.name for p in shelf.iterdir()) == [result.path.name]


def test_restore_without_a_backup_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no backup file"):
        restore_database(tmp_path / "missing.db", tmp_path / "swarmd.db")


def test_restored_database_keeps_the_mode_of_the_one_it_replaces(tmp_path: Path) -> None:
    db = tmp_path / "home" / "swarmd.db"
    submit_tickets(db, 1)
    backup = backup_database(db, tmp_path / "backup.db").path
    db.chmod(0o640)

    restore_database(backup, db)

    assert stat.S_IMODE(db.stat().st_mode) == 0o640


def test_tickets_submitted_after_a_restore_never_take_an_id_or_a_file_of_a_later_one(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    ticket = tmp_path / "t.json"
    ticket.write_text('{"title": "t", "agent": "echo", "prompt": "hello"}')

    def run_one() -> int:
        result = swarmd("run-ticket", str(ticket), "--wait", env=swarmd_env)
        assert result.returncode == 0, result.stderr
        return int(result.stdout.split()[1])  # "ticket N succeeded: ..."

    first = run_one()
    backup = tmp_path / "backup.db"
    assert swarmd("backup", str(backup), env=swarmd_env).returncode == 0
    later = [run_one(), run_one()]
    later_log = home / "logs" / "attempts" / str(later[-1]) / "main.1.log"
    kept = later_log.read_bytes()

    restored = swarmd("restore", str(backup), env=swarmd_env)
    assert restored.returncode == 0, restored.stderr
    after_restore = run_one()

    assert (first, later) == (1, [2, 3])
    assert after_restore == 4
    assert later_log.read_bytes() == kept


def test_restoring_a_backup_from_before_the_id_counter_still_skips_the_replaced_ids(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "home" / "swarmd.db"

    async def fill(path: Path, count: int) -> None:
        async with await Store.open(path) as store:
            for i in range(count):
                spec = TicketSpec(title=f"t{i}", tasks=(TaskSpec(name="a", prompt="p"),))
                await store.submit_ticket(spec)

    asyncio.run(fill(db_path, 1))
    backup = tmp_path / "backup.db"
    backup_database(db_path, backup)
    asyncio.run(fill(db_path, 4))  # ids 2..5, then lost with the restore

    restore_database(backup, db_path, id_floor=0)

    async def next_id() -> int:
        async with await Store.open(db_path) as store:
            spec = TicketSpec(title="new", tasks=(TaskSpec(name="a", prompt="p"),))
            return (await store.submit_ticket(spec)).ticket_id

    assert asyncio.run(next_id()) == 6
