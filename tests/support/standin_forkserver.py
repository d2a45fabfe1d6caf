"""A stand-in for the daemon with a fork server: forks workers as the daemon does, then waits.

    python standin_forkserver.py --workers N --home DIR -- ARGV...

Starts a ``swarmd.spawn.spawners.ForkServer`` from an asyncio loop, has it fork N real workers
(``swarmd.worker``), and hands each a command job running ARGV in its workspace
``DIR/wN``. The test SIGKILLs this process and counts what survives. The helpers are shared
with the tests that run a fork server in their own loop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import time
from pathlib import Path
from typing import Any

from swarmd.spawn.groups import WorkerProcess
from swarmd.spawn.spawners import WorkerSpawner
from swarmd.wire.agent import AgentDef, AgentKind
from swarmd.wire.channel import Channel
from swarmd.wire.job import Job


def command_job(workspace: Path, argv: list[str]) -> dict[str, Any]:
    """A command job for a worker: run ``argv`` in ``workspace``."""
    job = Job(
        ticket_id=1,
        task_id=1,
        task=workspace.name,
        attempt=1,
        agent=AgentDef(name="command", kind=AgentKind.COMMAND),
        workspace=str(workspace),
        archive_path=str(workspace.parent / f"{workspace.name}.tar.gz"),
        deadline=time.time() + 600,
        command=tuple(argv),
        heartbeat_seconds=60,
    )
    return job.to_dict()


def check_job(workspace: Path, argv: list[str]) -> dict[str, Any]:
    """A verify job for a worker: one check running ``argv`` with the worker's environment."""
    job = Job(
        ticket_id=1,
        task_id=1,
        task=workspace.name,
        attempt=1,
        agent=AgentDef(name="verify", kind=AgentKind.VERIFY),
        workspace=str(workspace),
        archive_path=str(workspace.parent / f"{workspace.name}.tar.gz"),
        deadline=time.time() + 600,
        checks=({"type": "command_succeeds", "command": argv},),
        heartbeat_seconds=60,
    )
    return job.to_dict()


async def spawn_worker(
    spawner: WorkerSpawner,
    workspace: Path,
    env: dict[str, str],
    *,
    mkdir: bool = True,
    models: bool = True,
) -> tuple[WorkerProcess, Channel]:
    """Spawn a worker in ``workspace`` (logging to ``workspace.log``), as ``WorkerSession`` does."""
    if mkdir:
        workspace.mkdir(parents=True, exist_ok=True)
    daemon_end, worker_end = socket.socketpair()
    try:
        proc = await spawner.spawn_worker(
            cwd=workspace,
            env=env,
            log_path=workspace.with_suffix(".log"),
            channel_fd=worker_end.fileno(),
            models=models,
        )
    except BaseException:
        daemon_end.close()
        raise
    finally:
        worker_end.close()
    return proc, await Channel.from_socket(daemon_end)


async def run_workers(workers: int, home: Path, argv: list[str]) -> None:
    from swarmd.spawn.spawners import ForkServer

    env = dict(os.environ)
    server = ForkServer(env=env, cwd=home, log_path=home / "forkserver.log")
    await server.start()
    channels = []
    for number in range(workers):
        _, channel = await spawn_worker(server, home / f"w{number}", env)
        await channel.send({"type": "job", "job": command_job(home / f"w{number}", argv)})
        channels.append(channel)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("argv", nargs="+")
    args = parser.parse_args()
    asyncio.run(run_workers(args.workers, args.home, args.argv))


if __name__ == "__main__":
    main()
