"""A stand-in for the daemon: spawns workers the way the supervisor does, then waits to die.

    python standin_daemon.py --workers N --pass-fd FD --log DIR -- ARGV...

Each worker runs ARGV through ``swarmd.spawn.groups.spawn_process_group`` (own session, scrubbed
file descriptors, FD passed on), from an asyncio loop as in the daemon; ``{daemon_pid}`` in
ARGV becomes this process's pid. The test SIGKILLs this process and counts what survives.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from swarmd.spawn.groups import spawn_process_group


async def run_workers(workers: int, pass_fd: int, log_dir: Path, argv: list[str]) -> None:
    argv = [part.replace("{daemon_pid}", str(os.getpid())) for part in argv]
    for number in range(workers):
        await spawn_process_group(
            argv,
            cwd=log_dir,
            env=dict(os.environ),
            stdout_path=log_dir / f"worker-{number}.log",
            pass_fds=(pass_fd,),
        )
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--pass-fd", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("argv", nargs="+")
    args = parser.parse_args()
    asyncio.run(run_workers(args.workers, args.pass_fd, args.log, args.argv))


if __name__ == "__main__":
    main()
