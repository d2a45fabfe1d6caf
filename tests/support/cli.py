"""Real daemons, real workers, real signals: ``swarmd`` commands run as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swarmd.models import Attempt, Task, Ticket
from swarmd.store import Store

PROVIDER_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "MINIMAX_API_KEY", "NOTIFY_SOCKET")


def wait_until(
    condition: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.05
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def cli_env(home: Path, *, hidden: tuple[str, ...] = PROVIDER_VARIABLES) -> dict[str, str]:
    """The environment of a ``swarmd`` command on ``home``: no provider, no stray settings."""
    env = {k: v for k, v in os.environ.items() if k not in hidden and not k.startswith("SWARMD_")}
    env.update(
        SWARMD_HOME=str(home),
        # The test machine is shared and busy: the gate is tested on its own, not here.
        SWARMD_MIN_FREE_MEMORY_MB="0",
        SWARMD_MAX_LOAD="1000",
        SWARMD_SPAWN_SETTLE_SECONDS="0",
        SWARMD_RETRY_BACKOFF_SECONDS="0.05",
        SWARMD_SHUTDOWN_GRACE_SECONDS="5",
        SWARMD_LOG_LEVEL="debug",
        PYTHONUNBUFFERED="1",
    )
    return env


def swarmd(
    *args: str, env: dict[str, str], timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarmd", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def write_ticket(directory: Path, data: dict[str, Any], name: str = "ticket.json") -> Path:
    path = directory / name
    path.write_text(json.dumps(data))
    return path


def log_events(home: Path) -> list[dict[str, Any]]:
    path = home / "logs" / "swarmd.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


class Daemon:
    """``swarmd run`` as a real child process."""

    def __init__(self, env: dict[str, str], home: Path, *, stderr_to_file: bool = False) -> None:
        """``stderr_to_file``: for long runs, whose stderr would fill an unread pipe and
        block the daemon; it goes to ``<home>.stderr`` beside the home."""
        self.env = env
        self.home = home
        self.proc: subprocess.Popen[str] | None = None
        self._stderr_path = home.with_name(home.name + ".stderr") if stderr_to_file else None

    def start(self) -> Daemon:
        before = len([e for e in log_events(self.home) if e.get("event") == "supervisor_ready"])
        stderr: Any = subprocess.PIPE
        if self._stderr_path is not None:
            stderr = self._stderr_path.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "swarmd", "run"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
        if self._stderr_path is not None:
            stderr.close()
        wait_until(
            lambda: (
                len([e for e in log_events(self.home) if e.get("event") == "supervisor_ready"])
                > before
                or self.proc is None
                or self.proc.poll() is not None
            )
        )
        assert self.proc.poll() is None, f"the daemon exited: {self.stderr_text()}"
        return self

    def stderr_text(self) -> str:
        if self._stderr_path is not None:
            return self._stderr_path.read_text(errors="replace")
        return self.proc.stderr.read() if self.proc and self.proc.stderr else ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()


def read_store(home: Path, fn: Callable[[Store], Any]) -> Any:
    async def go() -> Any:
        async with await Store.open(home / "swarmd.db") as store:
            return await fn(store)

    return asyncio.run(go())


def ticket_of(home: Path, ticket_id: int) -> Ticket:
    return read_store(home, lambda s: s.get_ticket(ticket_id))  # type: ignore[no-any-return]


def tasks_of(home: Path, ticket_id: int) -> list[Task]:
    return read_store(home, lambda s: s.list_tasks(ticket_id))  # type: ignore[no-any-return]


def attempts_of(home: Path, task_id: int) -> list[Attempt]:
    return read_store(home, lambda s: s.list_attempts(task_id))  # type: ignore[no-any-return]


def python_command(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def swarmd_says(
    *args: str, env: dict[str, str], timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``swarmd ARGS``, which, whatever it exits with, must not show a traceback."""
    result = swarmd(*args, env=env, timeout=timeout, cwd=cwd)
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout
    return result


def one_sentence(stream: str) -> str:
    """A message printed as one ``swarmd: ...`` line, its whitespace folded; fails otherwise."""
    lines = [line for line in stream.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("swarmd: "), stream
    return " ".join(lines[0].split())
