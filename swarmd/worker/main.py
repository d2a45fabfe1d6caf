"""The worker: runs inside the child process, one attempt of one task, and reports back.

Started by the supervisor as ``python -m swarmd.worker --parent PID --channel-fd N``. It arms
the parent-death shim before anything else, reads its job from the channel, heartbeats while
the agent works, packages the outputs, and sends one result. It never opens the database.

Imports stay lean: every task pays this module's start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import traceback
from pathlib import Path

from swarmd.wire.agent import AgentKind
from swarmd.wire.channel import Channel, ChannelClosed, WorkerCalls
from swarmd.wire.job import Job
from swarmd.wire.result import AgentResult
from swarmd.worker.shim import adopt_orphans, arm_parent_death, kill_rest_of_group


def leave_out_httpx_command_line() -> None:
    """Keep httpx from importing its own command line, which a worker never runs.

    httpx imports it whenever click and rich are installed (they are, beside typer): ~80 ms
    of every fresh worker's start-up and ~6 MB of the fork server that every forked worker
    shares. A ``None`` in ``sys.modules`` makes that import fail, and httpx goes on without
    it, as it does where they are missing.
    """
    if "httpx._main" not in sys.modules:
        sys.modules["httpx._main"] = None  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> int:
    leave_out_httpx_command_line()
    parser = argparse.ArgumentParser(prog="swarmd.worker")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--channel-fd", type=int, required=True)
    args = parser.parse_args(argv)
    arm_parent_death(args.parent)
    return run_worker(args.channel_fd)


STARTS_PROCESSES = frozenset({AgentKind.COMMAND, AgentKind.VERIFY})
"""The agents that run commands: only their workers can leave a process in their group."""


def run_worker(channel_fd: int) -> int:
    """Serve one job, then take down what is left of this worker's process group.

    The worker adopts its orphans first, so the sweep walks its own descendants; it is still
    skipped for the agents that start no process: every task pays the worker's exit.
    """
    adopting = adopt_orphans()
    code, job = asyncio.run(serve(channel_fd))
    if job is None or job.agent.kind in STARTS_PROCESSES:
        kill_rest_of_group(adopting=adopting)
    return code


async def serve(channel_fd: int) -> tuple[int, Job | None]:
    """Run the job the channel brings; the exit code, and the job (None if none came)."""
    channel = await Channel.from_socket(socket.socket(fileno=channel_fd))
    try:
        message = await channel.receive()
    except ChannelClosed:
        return 3, None
    job = Job.from_dict(message["job"])
    return await serve_job(channel, job), job


async def serve_job(channel: Channel, job: Job) -> int:
    calls = WorkerCalls(channel)
    replies = asyncio.create_task(calls.route_replies(), name="route-replies")
    beats = asyncio.create_task(send_heartbeats(channel, job.heartbeat_seconds), name="heartbeat")
    job_task = asyncio.create_task(run_job(job, calls), name="job")
    # SIGTERM (from the daemon, to the whole group) stops the agent, which passes it on to
    # its own children and waits for them: a stubborn agent is then the group's SIGKILL's.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, job_task.cancel)
    try:
        result = await job_task
        await channel.send(result.to_message())
    except asyncio.CancelledError:
        return 128 + signal.SIGTERM
    except ChannelClosed:
        return 3
    finally:
        beats.cancel()
        replies.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beats
        with contextlib.suppress(asyncio.CancelledError):
            await replies
        await channel.close()
    return 0


async def send_heartbeats(channel: Channel, interval: float) -> None:
    while True:
        await channel.send({"type": "heartbeat"})
        await asyncio.sleep(interval)


async def run_job(job: Job, calls: WorkerCalls) -> AgentResult:
    """Prepare the workspace, run the agent, package its outputs; never raise."""
    try:
        result = await run_agent(job, calls)
        if result.ok and not job.worktree:  # a worktree's work is the daemon's to commit
            if is_small_tree(Path(job.workspace)):
                archive = package_outputs(job, result.details)
            else:
                archive = await asyncio.to_thread(package_outputs, job, result.details)
            result = AgentResult(ok=True, details={**result.details, "archive": archive})
        return result
    except Exception as exc:
        # The traceback goes to the attempt's log file; the result carries one sentence.
        traceback.print_exc()
        sys.stdout.flush()
        return AgentResult(ok=False, error=f"{type(exc).__name__}: {exc}")


async def run_agent(job: Job, calls: WorkerCalls) -> AgentResult:
    from swarmd.outputs import prepare_workspace

    workspace = Path(job.workspace)
    if not job.worktree:
        prepare_workspace(workspace, [(name, Path(path)) for name, path in job.inputs])
    else:
        prepare_workspace(job.records_dir, [])  # swarmd's own files of the attempt, fresh
    kind = job.agent.kind
    if kind is AgentKind.ECHO:
        from swarmd.agents.echo import run_echo

        return run_echo(job)
    if kind is AgentKind.COMMAND:
        from swarmd.agents.command import run_command

        return await run_command(job, dict(os.environ))
    if kind is AgentKind.LLM:
        from swarmd.agents.llm import run_llm

        return await run_llm(job, calls)
    if kind is AgentKind.PLANNER:
        from swarmd.agents.planner import run_planner

        return await run_planner(job, calls)
    if kind is AgentKind.VERIFY:
        from swarmd.agents.verify import run_verify

        return await run_verify(job, calls, dict(os.environ))
    return AgentResult(ok=False, error=f"unknown agent kind {kind!r}", retryable=False)


SMALL_TREE_FILES = 64
SMALL_TREE_BYTES = 1024 * 1024


def is_small_tree(root: Path) -> bool:
    """Whether ``root`` holds at most ``SMALL_TREE_FILES`` entries and ``SMALL_TREE_BYTES``.

    Such a workspace is archived on the loop (a few milliseconds at most, the heartbeats can
    wait): a thread for it would cost more than the archive, in every task. A larger one is
    archived on a thread, so that the heartbeats go on while it is written.
    """
    entries = 0
    size = 0
    pending = [root]
    try:
        while pending:
            with os.scandir(pending.pop()) as listing:
                for entry in listing:
                    entries += 1
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        size += entry.stat(follow_symlinks=False).st_size
                    if entries > SMALL_TREE_FILES or size > SMALL_TREE_BYTES:
                        return False
    except OSError:
        return False  # the archive itself reports what is wrong, from its thread
    return True


def package_outputs(job: Job, details: dict[str, object]) -> dict[str, object]:
    """Write the task archive; what the attempt's result keeps of it.

    The archive's manifest describes the task alone (its name, its agent, the reply's refused
    blocks), so the same outputs make the same bytes whichever ticket, attempt or model made
    them; those facts, with the usage and timings, stay in the attempt's result.
    """
    from swarmd.outputs import write_task_archive

    manifest: dict[str, object] = {"task": job.task, "agent": job.agent.name}
    if "refused" in details:
        manifest["refused"] = details["refused"]
    info = write_task_archive(Path(job.workspace), Path(job.archive_path), manifest=manifest)
    return {
        "path": str(info.path),
        "files": info.file_count,
        "bytes": info.total_bytes,
        "sha256": info.sha256,
    }


if __name__ == "__main__":
    sys.exit(main())
