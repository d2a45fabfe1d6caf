"""Backups of the database, checks of a database file, and restoring one in place.

``backup_database`` uses SQLite's online backup API: the copy is one consistent snapshot
even while the daemon writes (in WAL mode a reader never blocks a writer). Every file is
written beside its destination under a temporary name, checked, synced and renamed into
place, so a reader sees either the old file or the whole new one.

``check_database`` opens a file read-only and never changes it. ``restore_database`` checks
the backup first, moves the current database aside (it is never deleted) and copies the
backup in. It must not run while a daemon uses the database: the caller holds the home's
lock (``swarmd.home.HomeLock``) around it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote

from swarmd.errors import InputError, StoreError
from swarmd.store import queries
from swarmd.store.database import BUSY_TIMEOUT_MS, migrate
from swarmd.store.schema import LATEST_VERSION

_SIDE_FILES = ("-wal", "-shm", "-journal")
_PROBLEMS_SHOWN = 5


@dataclass(frozen=True, slots=True)
class DatabaseCheck:
    """What a read-only look at a database file found."""

    path: Path
    problems: tuple[str, ...] = ()  # empty when the file is sound
    schema_version: int | None = None
    tickets: int | None = None
    tasks: int | None = None
    size_bytes: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        """One sentence: what the file holds, or its first problem."""
        if self.problems:
            return f"the database {self.path} is unusable: {self.problems[0]}"
        return f"{self.path}: integrity ok, schema version {self.schema_version}, {self.contents}"

    @property
    def contents(self) -> str:
        """``3 tickets, 12 tasks``."""
        return f"{_count(self.tickets, 'ticket')}, {_count(self.tasks, 'task')}"


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    size_bytes: int
    seconds: float
    check: DatabaseCheck


@dataclass(frozen=True, slots=True)
class RestoreResult:
    path: Path  # the restored database
    moved_aside: Path | None  # where the database it replaced went; None if there was none
    check: DatabaseCheck  # of the backup that was restored


def check_database(path: Path, *, quick: bool = False) -> DatabaseCheck:
    """Look at the database at ``path`` read-only: integrity, schema version, row counts.

    ``quick`` runs ``PRAGMA quick_check`` (which skips the indexes' contents) instead of the
    full ``integrity_check``. A broken file is reported in ``problems``, not raised; a
    missing one raises ``StoreError``.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"there is no database file at {path}")
    idle = not _side_files(path)
    found = _check_once(path, quick=quick, immutable=idle)
    if idle and not found.ok:
        # Read as immutable, the file may have been checkpointed into mid-read by a process
        # that opened it meanwhile: a finding counts only if a locked read confirms it.
        found = _check_once(path, quick=quick, immutable=False)
    return found


def _check_once(path: Path, *, quick: bool, immutable: bool) -> DatabaseCheck:
    size = path.stat().st_size
    try:
        conn = _connect_readonly(path, immutable=immutable)
    except sqlite3.Error as exc:
        return DatabaseCheck(path, problems=(_explain(exc),), size_bytes=size)
    try:
        return _inspect(conn, path, size, quick=quick)
    finally:
        conn.close()


def _inspect(conn: sqlite3.Connection, path: Path, size: int, *, quick: bool) -> DatabaseCheck:
    pragma = "quick_check" if quick else "integrity_check"
    try:
        rows = conn.execute(f"PRAGMA {pragma}({_PROBLEMS_SHOWN})").fetchall()
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as exc:
        return DatabaseCheck(path, problems=(_explain(exc),), size_bytes=size)
    findings = [str(row[0]) for row in rows]
    if findings != ["ok"]:
        return DatabaseCheck(
            path,
            problems=tuple(f"{pragma} found: {finding}" for finding in findings),
            schema_version=version,
            size_bytes=size,
        )
    if version > LATEST_VERSION:
        problem = (
            f"its schema version {version} is newer than the {LATEST_VERSION} this swarmd "
            "knows; upgrade swarmd"
        )
        return DatabaseCheck(path, problems=(problem,), schema_version=version, size_bytes=size)
    if version == 0:
        return _inspect_unversioned(conn, path, size)
    try:
        tickets = int(conn.execute("SELECT COUNT(*) FROM tickets").fetchone()[0])
        tasks = int(conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0])
    except sqlite3.Error as exc:
        return DatabaseCheck(
            path, problems=(_explain(exc),), schema_version=version, size_bytes=size
        )
    notes: tuple[str, ...] = ()
    if version < LATEST_VERSION:
        notes = (f"schema version {version} is migrated to {LATEST_VERSION} when next opened",)
    return DatabaseCheck(
        path,
        schema_version=version,
        tickets=tickets,
        tasks=tasks,
        size_bytes=size,
        notes=notes,
    )


def _inspect_unversioned(conn: sqlite3.Connection, path: Path, size: int) -> DatabaseCheck:
    # A file with no schema at all is what a first open creates before it migrates: it
    # holds nothing to lose and is set up when next opened.
    try:
        objects = int(conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0])
    except sqlite3.Error as exc:
        return DatabaseCheck(path, problems=(_explain(exc),), schema_version=0, size_bytes=size)
    if objects:
        problem = "it is a SQLite file but not a swarmd database (schema version 0)"
        return DatabaseCheck(path, problems=(problem,), schema_version=0, size_bytes=size)
    note = "the database is empty; its schema is created when first opened"
    return DatabaseCheck(path, schema_version=0, tickets=0, tasks=0, size_bytes=size, notes=(note,))


def backup_database(db_path: Path, dest: Path, *, overwrite: bool = False) -> BackupResult:
    """Copy the live database at ``db_path`` to ``dest``, consistent while others write.

    ``dest`` may be a directory: the copy is then named ``swarmd-<UTC time>.db`` inside it.
    An existing file is replaced only with ``overwrite``. The copy is checked before it is
    renamed into place, and written with a rollback journal so it is one self-contained file.
    """
    db_path, dest = Path(db_path), Path(dest)
    if not db_path.is_file():
        raise StoreError(f"there is no database at {db_path} to back up")
    if dest.is_dir():
        dest = dest / f"swarmd-{_timestamp()}.db"
    if dest.exists() and not overwrite:
        raise InputError(f"{dest} already exists; pass --force to replace it")
    if dest.resolve() == db_path.resolve():
        raise InputError(f"cannot back up {db_path} onto itself")
    began = time.monotonic()
    check = _copy_into_place(db_path, dest)
    return BackupResult(dest, check.size_bytes, time.monotonic() - began, check)


def restore_database(backup: Path, db_path: Path, *, id_floor: int = 0) -> RestoreResult:
    """Put the database ``backup`` in place of ``db_path``; the caller holds the home's lock.

    The backup is checked first, and copied beside ``db_path`` before anything is moved.
    The copy is migrated to the current schema, and its next ticket id raised past
    ``id_floor`` (the highest id the home's files name) and past every id the replaced
    database gave: a ticket submitted after a restore never takes the id, and so the logs
    and archives, of one submitted after the backup was made.
    The current database, if any, is renamed to ``<name>.before-restore-<UTC time>`` with
    its write-ahead log (renamed alike, so the pair still opens); the stale shared-memory
    index is removed.
    """
    backup, db_path = Path(backup), Path(db_path)
    if not backup.is_file():
        raise InputError(f"there is no backup file at {backup}")
    if backup.resolve() == db_path.resolve():
        raise InputError(f"{backup} is the database itself; name a backup file")
    before = check_database(backup)
    if not before.ok:
        raise StoreError(
            f"the backup {backup} failed its check ({before.problems[0]}); nothing was changed"
        )
    db_path.parent.mkdir(parents=True, exist_ok=True)
    staged = _staging_path(db_path)
    try:
        _copy_database(backup, staged)
        _raise_ticket_ids(staged, max(id_floor, _highest_ticket_id(db_path)))
        _match_owner_and_mode(staged, db_path)
        aside = _move_aside(db_path)
        try:
            os.replace(staged, db_path)
        except OSError:
            if aside is not None:
                _put_back(aside, db_path)
            raise
        _sync_directory(db_path.parent)
    except sqlite3.Error as exc:
        raise StoreError(
            f"restoring {backup} failed ({_explain(exc)}); nothing was changed"
        ) from exc
    except OSError as exc:
        raise StoreError(f"restoring {backup} into {db_path} failed: {exc}") from exc
    finally:
        _remove_quietly(staged)
    return RestoreResult(db_path, aside, before)


def _highest_ticket_id(db_path: Path) -> int:
    """The highest ticket id a database gave (0 if there is none, or it cannot be read)."""
    if not db_path.exists():
        return 0
    try:
        conn = _connect_readonly(db_path)
    except sqlite3.Error:
        return 0
    try:
        row = conn.execute(queries.HIGHEST_TICKET_ID).fetchone()
    except sqlite3.Error:  # a schema before the counter, or no tickets table at all
        try:
            row = conn.execute("SELECT COALESCE(MAX(id), 0) FROM tickets").fetchone()
        except sqlite3.Error:
            return 0
    finally:
        conn.close()
    return int(row[0] or 0)


def _raise_ticket_ids(path: Path, floor: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        migrate(conn, path)
        conn.execute(queries.RAISE_TICKET_ID_FLOOR, (floor,))
    finally:
        conn.close()


def _copy_into_place(source: Path, dest: Path) -> DatabaseCheck:
    staged = _staging_path(dest)
    try:
        _copy_database(source, staged)
        check = check_database(staged)
        if not check.ok:
            raise StoreError(f"the copy of {source} failed its check: {check.problems[0]}")
        # The database holds every prompt and result: the copy is for its owner's eyes.
        staged.chmod(0o600)
        os.replace(staged, dest)
        _sync_directory(dest.parent)
    except sqlite3.Error as exc:
        raise StoreError(f"copying {source} to {dest} failed: {_explain(exc)}") from exc
    except OSError as exc:
        raise StoreError(f"writing {dest} failed: {exc}") from exc
    finally:
        _remove_quietly(staged)
    return replace(check, path=dest, size_bytes=dest.stat().st_size)


def _copy_database(source: Path, dest: Path) -> None:
    """One backup-API pass from ``source`` (opened read-only) to a new file ``dest``, synced."""
    src = _connect_readonly(source)
    try:
        src.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        dst = sqlite3.connect(dest, isolation_level=None)
        try:
            # One step (pages=-1): the whole copy is read in one read transaction, so it is
            # one snapshot. Copying in slices would restart each time the daemon commits.
            src.backup(dst)
            # The copy inherits WAL mode from the source's header; a rollback journal makes
            # it one self-contained file that opens read-only without side files.
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
    finally:
        src.close()
    _sync_file(dest)


def _move_aside(db_path: Path) -> Path | None:
    aside: Path | None = None
    if db_path.exists():
        aside = db_path.with_name(f"{db_path.name}.before-restore-{_timestamp()}")
        suffix = 1
        while aside.exists():
            suffix += 1
            aside = db_path.with_name(f"{db_path.name}.before-restore-{_timestamp()}-{suffix}")
        os.rename(db_path, aside)
    for side in _SIDE_FILES:
        stale = db_path.with_name(db_path.name + side)
        if not stale.exists():
            continue
        if side == "-shm" or aside is None:
            # The shared-memory index is rebuilt from the log; a log without its database
            # belongs to nothing.
            stale.unlink()
        else:
            # The log may hold commits not yet in the main file: it goes with its database,
            # under the name SQLite looks for beside the renamed file.
            os.rename(stale, aside.with_name(aside.name + side))
    return aside


def _put_back(aside: Path, db_path: Path) -> None:
    os.rename(aside, db_path)
    log = aside.with_name(aside.name + "-wal")
    if log.exists():
        os.rename(log, db_path.with_name(db_path.name + "-wal"))


def _match_owner_and_mode(staged: Path, db_path: Path) -> None:
    """Give the restored file the replaced one's owner and mode: a restore run as root must
    not leave the daemon's user a database it cannot write."""
    try:
        old = db_path.stat()
    except FileNotFoundError:
        return
    with contextlib.suppress(PermissionError):
        os.chown(staged, old.st_uid, old.st_gid)
    staged.chmod(stat.S_IMODE(old.st_mode))


def _side_files(path: Path) -> list[Path]:
    candidates = (path.with_name(path.name + side) for side in _SIDE_FILES)
    return [candidate for candidate in candidates if candidate.exists()]


def _connect_readonly(path: Path, *, immutable: bool | None = None) -> sqlite3.Connection:
    """A read-only connection that creates no file.

    A read-only open of a WAL database creates its ``-wal`` and ``-shm`` files when they
    are missing, owned by whoever opened it (root, for ``sudo swarmd doctor``), which can
    lock the daemon's own user out. With no side files there is no log to read and no
    writer, so the file is opened as immutable instead: no locks, no side files.
    """
    if immutable is None:
        immutable = not _side_files(path)
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    if immutable:
        uri += "&immutable=1"
    return sqlite3.connect(uri, uri=True, isolation_level=None)


def _explain(exc: sqlite3.Error) -> str:
    message = str(exc)
    lowered = message.lower()
    if "not a database" in lowered:
        return "it is not a SQLite database (file is not a database)"
    if "malformed" in lowered or "corrupt" in lowered:
        return f"it is corrupt ({message})"
    if "unable to open" in lowered:
        return f"it cannot be opened ({message})"
    return message


def _count(n: int | None, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _staging_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{os.getpid()}.tmp")


def _timestamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_directory(path: Path) -> None:
    # A rename is durable only once the directory holding it is synced.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: Path) -> None:
    for candidate in (path, *(path.with_name(path.name + side) for side in _SIDE_FILES)):
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()
