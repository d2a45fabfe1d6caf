"""A real PostgreSQL server for the tests, in a temporary directory, on a loopback port.

``initdb`` refuses to run as root: as root (CI), the cluster belongs to ``nobody`` and every
server program runs under ``setpriv`` as that user. The binaries are Debian's
(``/usr/lib/postgresql/<version>/bin``), the ``pgserver`` wheel's, or the path's. Each test
gets a database of its own, copied from a template the first test migrated.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import importlib.util
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

_NOBODY = 65534


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: Debian's newest; else the server
    the ``pgserver`` wheel bundles (in the test extras, so a machine with only Python and
    PyPI runs these tests too); else the path's."""
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if debian:
        return Path(debian[-1]).parent
    # Found without importing it: its import has side effects (a warning about XDG dirs).
    spec = importlib.util.find_spec("pgserver")
    for location in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(location) / "pginstall" / "bin"
        if (bundled / "pg_ctl").exists():
            return bundled
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One cluster: ``start``, ``stop``, ``restart`` (``pg_ctl restart -m fast``), databases."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="swarmd-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self._as_root = os.geteuid() == 0
        self._names = itertools.count(1)
        if self._as_root:
            os.chown(self.root, _NOBODY, _NOBODY)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "swarmd",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bindir / program), *args]
        if self._as_root:
            command = ["setpriv", f"--reuid={_NOBODY}", f"--regid={_NOBODY}", "--clear-groups"]
            command += [str(self.bindir / program), *args]
        return command

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            self._command(program, *args),
            cwd=self.root,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        """What an operator's ``pg_ctl restart -m fast`` does: every connection is cut."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w", "restart"
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://swarmd@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(sql)

    def new_database(self, template: str | None = None) -> str:
        """A fresh, empty database (or a copy of ``template``); returns its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        copy = f" TEMPLATE {template}" if template else ""
        self.execute(f"CREATE DATABASE {name}{copy}")
        return self.url(name)

    def clean_up(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> PostgresServer:
    """A running server, or a skip that says why (in CI, a skip fails the run)."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[test]')")
    server = PostgresServer(bindir)
    deadline = time.monotonic() + 30
    while True:
        try:
            server.start()
            return server
        except RuntimeError:
            if time.monotonic() > deadline:
                server.clean_up()
                raise
            server.port = _free_port()


_shared: PostgresServer | None = None
TEMPLATE = "swarmd_template"


def shared_server() -> PostgresServer:
    """The one server of this test process, started on first use with a migrated template
    database; stopped when the process exits."""
    global _shared
    if _shared is None:
        server = start_server()
        atexit.register(server.clean_up)
        server.execute(f"CREATE DATABASE {TEMPLATE}")
        _migrate(server.url(TEMPLATE))
        _shared = server
    return _shared


def _migrate(url: str) -> None:
    import psycopg

    from swarmd.store.postgres.connection import migrate

    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn, url)


def new_database_url() -> str:
    """A fresh, migrated database on the shared server."""
    return shared_server().new_database(template=TEMPLATE)


def query(
    location: Path | str, sql: str, params: tuple[object, ...] = ()
) -> list[tuple[object, ...]]:
    """Run one statement of the store's dialect (``?``) against either backend, outside the
    store: what the tests read to check the database itself."""
    if isinstance(location, Path):
        import sqlite3

        with contextlib.closing(sqlite3.connect(location)) as conn:
            return [tuple(row) for row in conn.execute(sql, params)]
    import psycopg

    from swarmd.store.postgres.dialect import to_postgres

    with psycopg.connect(location, autocommit=True) as conn:
        cursor = conn.execute(to_postgres(sql), params)
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
