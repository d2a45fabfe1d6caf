"""The hostile-input suite: the real ``swarmd`` command, run in a sandbox, fed bad input.

Every case runs ``python -m swarmd`` as a subprocess with its own ``SWARMD_HOME``, its own
``HOME`` and current directory, and an environment holding nothing but what the case sets
(no provider keys). It then checks what the principle promises: the exit code's class, one
sentence and no traceback, nothing written outside the home, a bounded time (every run has
a timeout, and its process group is killed past it) and, where it matters, bounded memory
(the peak RSS of the command and its descendants, under an address-space limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from swarmd.store import Store
from swarmd.tickets import parse_ticket_text

SWARMD = (sys.executable, "-m", "swarmd")
BAD_INPUT, FAILED, ENVIRONMENT, SETTINGS = 2, 1, 3, 78
PARALLEL = min(2, os.cpu_count() or 1)
"""Cases run this many at a time: each is mostly an interpreter starting up."""

# Runs the command under an address-space limit and reports the peak RSS of the largest of
# its descendants (RUSAGE_CHILDREN counts every process reaped below this one).
_MEASURED = textwrap.dedent(
    """
    import json, resource, subprocess, sys
    limit, report, *command = sys.argv[1:]
    if int(limit):
        resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))
    code = subprocess.call(command)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(report, "w") as out:
        json.dump({"returncode": code, "peak_kb": peak}, out)
    """
)


@dataclass
class Outcome:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    created: list[str]  # paths that appeared outside the home, relative to the sandbox
    peak_mb: float | None = None

    def describe(self) -> str:
        return (
            f"swarmd {' '.join(self.args)!r} exited {self.returncode} in {self.seconds:.1f}s\n"
            f"--- stdout\n{self.stdout[-2000:]}\n--- stderr\n{self.stderr[-2000:]}\n"
            f"--- created outside the home: {self.created}"
        )

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Sandbox:
    """A directory holding a case's home, its user's HOME, its current directory and inputs."""

    root: Path
    env_extra: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def user_home(self) -> Path:
        return self.root / "user"

    @property
    def cwd(self) -> Path:
        return self.root / "cwd"

    @property
    def inputs(self) -> Path:
        return self.root / "in"

    @property
    def meta(self) -> Path:
        return self.root / "meta"  # the harness's own files: not part of the check

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.user_home),
            "SWARMD_HOME": str(self.home),
            # The machine is shared: the gate is tested elsewhere, not here.
            "SWARMD_MIN_FREE_MEMORY_MB": "0",
            "SWARMD_MAX_LOAD": "1000",
            "SWARMD_SPAWN_SETTLE_SECONDS": "0",
            "SWARMD_RETRY_BACKOFF_SECONDS": "0.05",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "COLUMNS": "200",
        }
        if "PYTHONPATH" in os.environ:  # to run the suite against another checkout
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        env.update(self.env_extra)
        env.update(extra)
        return {key: value for key, value in env.items() if value is not None}

    def write(self, name: str, data: str | bytes) -> Path:
        path = self.inputs / name
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        path.write_bytes(data)
        return path

    def ticket(self, data: dict[str, Any], name: str = "ticket.json") -> Path:
        return self.write(name, json.dumps(data))

    def run(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 30.0,
        memory_limit_mb: int | None = None,
        measure: bool = False,
        cwd: Path | None = None,
    ) -> Outcome:
        """Run ``swarmd *args``; its whole process group is killed past ``timeout``."""
        before = self.snapshot()
        command: list[str] = [*SWARMD, *args]
        report = self.meta / f"run-{time.monotonic_ns()}.json"
        if measure or memory_limit_mb:
            limit = (memory_limit_mb or 0) * 2**20
            command = [sys.executable, "-c", _MEASURED, str(limit), str(report), *command]
        started = time.monotonic()
        process = subprocess.Popen(
            command,
            cwd=cwd or self.cwd,
            env=env if env is not None else self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            pytest.fail(
                f"swarmd {' '.join(args)!r} still ran after {timeout}s\n"
                f"{err.decode(errors='replace')[-2000:]}"
            )
        seconds = time.monotonic() - started
        returncode, peak_mb = process.returncode, None
        if report.exists():
            measured = json.loads(report.read_text())
            returncode, peak_mb = measured["returncode"], measured["peak_kb"] / 1024
        return Outcome(
            args=tuple(args),
            returncode=returncode,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            seconds=seconds,
            created=sorted(self.snapshot() - before),
            peak_mb=peak_mb,
        )

    def snapshot(self) -> set[str]:
        """Every path under the sandbox but the home and the harness's own files."""
        skipped = {self.home, self.meta}
        found: set[str] = set()
        for directory, dirs, files in os.walk(self.root):
            here = Path(directory)
            dirs[:] = [name for name in dirs if here / name not in skipped]
            for name in [*dirs, *files]:
                found.add(str((here / name).relative_to(self.root)))
        return found


def make_sandbox(root: Path) -> Sandbox:
    box = Sandbox(root)
    for path in (box.user_home, box.cwd, box.inputs, box.meta):
        path.mkdir()
    return box


Runner = Callable[[Sandbox], Outcome]


class Batch:
    """The selected cases of one table, run ``PARALLEL`` at a time, each in its own sandbox,
    from the moment the first of their tests asks; each test then checks its own outcome."""

    def __init__(self, sandboxes: Mapping[str, Sandbox], runners: Mapping[str, Runner]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="hostile")
        self._runs: dict[str, tuple[Sandbox, Future[Outcome]]] = {
            name: (box, self._pool.submit(runners[name], box)) for name, box in sandboxes.items()
        }

    def outcome(self, case: str) -> tuple[Sandbox, Outcome]:
        box, future = self._runs[case]
        return box, future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def open_batch(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    runners: Mapping[str, Runner],
) -> Batch:
    """A batch of the cases of ``runners`` that the session selected: the ``case`` parameter
    of each collected test that uses the requesting fixture (with ``-k``, only those)."""
    wanted = [
        item.callspec.params["case"]  # type: ignore[attr-defined]
        for item in request.session.items
        if request.fixturename in getattr(item, "fixturenames", ()) and hasattr(item, "callspec")
    ]
    sandboxes = {
        case: make_sandbox(tmp_path_factory.mktemp(case[:40], numbered=True))
        for case in dict.fromkeys(wanted)
    }
    return Batch(sandboxes, runners)


def batch_fixture(name: str, runners: Mapping[str, Runner]) -> Callable[..., Iterator[Batch]]:
    """A module fixture ``name`` running the selected cases of ``runners`` (see ``open_batch``);
    its tests are parametrised by ``case``."""

    def fixture(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[Batch]:
        batch = open_batch(request, tmp_path_factory, runners)
        yield batch
        batch.close()

    return pytest.fixture(scope="module", name=name)(fixture)


def assert_clean(outcome: Outcome) -> None:
    """No traceback, nothing written outside the home."""
    assert "Traceback" not in outcome.output, outcome.describe()
    assert outcome.created == [], outcome.describe()


def assert_refused(outcome: Outcome, code: int, *fragments: str) -> str:
    """Exit ``code`` with one ``swarmd:`` sentence on stderr holding every fragment."""
    assert outcome.returncode == code, outcome.describe()
    assert_clean(outcome)
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    sentences = [line for line in lines if line.startswith("swarmd: ")]
    assert len(sentences) == 1, outcome.describe()
    for fragment in fragments:
        assert fragment in sentences[0], outcome.describe()
    assert sentences[0].isprintable(), outcome.describe()
    return sentences[0]


def queue_ticket(home: Path, text: str) -> None:
    """Queue the ticket ``text`` (JSON) in ``home`` directly, as ``swarmd submit`` would."""

    async def submit() -> None:
        async with await Store.open(home / "swarmd.db") as store:
            await store.submit_ticket(parse_ticket_text(text, fmt="json"))

    home.mkdir(parents=True, exist_ok=True)
    asyncio.run(submit())


def nothing_queued(home: Path) -> bool:
    """The home holds no database, or one without a ticket."""
    database = home / "swarmd.db"
    if not database.exists():
        return True
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return int(connection.execute("SELECT COUNT(*) FROM tickets").fetchone()[0]) == 0
