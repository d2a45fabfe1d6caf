"""The command agent: runs an argv in the workspace, so any command-line agent can do a task.

Placeholders ``{prompt}``, ``{workspace}``, ``{task}`` and ``{ticket}`` are replaced inside
each argument. The command runs in the worker's process group, so the daemon's signals reach
it too. Its stderr goes to the worker's (the attempt's log file); its stdout is part of its
output, kept as ``stdout.txt`` in the workspace (``swarmd.agents.stdout``).

A named agent may say more of that stdout: ``usage`` reads the model, tokens and cost (and the
answer) an agent CLI reports (``swarmd.agents.cli_usage``), into the same result details an
llm task has; ``reply = "files"`` writes the ``<file path=...>`` blocks of the answer (or of
stdout, when there is no usage format) into the workspace, as an llm reply's are.

The command's environment is built from nothing, like sudo's ``env_reset``: a minimal base
(``BASE_ENV_NAMES``, ``LC_*``), the variables its agent is granted by name, and
``SWARMD_TASK`` and ``SWARMD_TICKET``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from swarmd.agents.cli_usage import PROVIDER_OF, CliReport, read_cli_report
from swarmd.agents.stdout import STDOUT_FILE, StdoutKeeper
from swarmd.outputs import safe_write, write_reply_files
from swarmd.outputs.workspace import RESPONSE_FILE
from swarmd.wire.agent import ReplyMode, UsageFormat
from swarmd.wire.job import Job
from swarmd.wire.result import AgentResult

BASE_ENV_NAMES = frozenset(
    {"PATH", "HOME", "LANG", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL", "TERM"}
)
BASE_ENV_PREFIXES = ("LC_",)
READ_CHUNK_BYTES = 64 * 1024
DRAIN_SECONDS = 2.0
"""How long stdout is still read once the command has exited: a child it left running in the
background may hold the pipe open for ever (the daemon kills the whole group after)."""


def expand_command(argv: tuple[str, ...], job: Job) -> list[str]:
    values = {
        "{prompt}": job.prompt or "",
        "{workspace}": job.workspace,
        "{task}": job.task,
        "{ticket}": str(job.ticket_id),
    }
    expanded = []
    for arg in argv:
        text = arg
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        expanded.append(text)
    return expanded


def command_environment(worker_env: Mapping[str, str], job: Job) -> dict[str, str]:
    """The command's whole environment: the base names found in ``worker_env``, the
    variables its agent is granted, and the task's identity."""
    base = {
        name: value
        for name, value in worker_env.items()
        if name in BASE_ENV_NAMES or name.startswith(BASE_ENV_PREFIXES)
    }
    return {
        **base,
        **job.granted_env,
        "SWARMD_TASK": job.task,
        "SWARMD_TICKET": str(job.ticket_id),
    }


async def run_command(job: Job, base_env: Mapping[str, str]) -> AgentResult:
    """Run the task's argv (else its agent's) with its stdout kept, and read as its agent says.

    ``base_env`` is the worker's environment, from which the command's base is taken.
    """
    argv = job.command or job.agent.command
    if not argv:
        return AgentResult(ok=False, error="the command agent has no command", retryable=False)
    try:
        keeper = StdoutKeeper(job.records_dir)
    except OSError as exc:
        return AgentResult(ok=False, error=f"cannot keep {STDOUT_FILE}: {exc.strerror}")
    try:
        code = await run_keeping_stdout(
            expand_command(argv, job), job.workspace, command_environment(base_env, job), keeper
        )
    except OSError as exc:
        return AgentResult(
            ok=False, error=f"cannot run {argv[0]!r}: {exc.strerror}", retryable=False
        )
    finally:
        stdout = keeper.finish()
    if keeper.error is not None:
        return AgentResult(ok=False, error=f"cannot write {STDOUT_FILE}: {keeper.error.strerror}")
    return command_result(job, argv[0], code, keeper, stdout.decode("utf-8", "replace"))


def command_result(
    job: Job, program: str, code: int, keeper: StdoutKeeper, stdout: str
) -> AgentResult:
    """The attempt's result: how the command exited, how much it printed, the usage it
    reported (spent even when it failed) and, when it succeeded, its reply kept."""
    details: dict[str, Any] = {"exit_code": code, "stdout_bytes": keeper.total}
    if keeper.cut:
        details["stdout_cut_bytes"] = keeper.cut
    report = read_cli_report(job.agent.usage, stdout) if job.agent.usage else None
    if report is not None:
        details.update(usage_details(job, report))
    if code != 0:
        reason = f"signal {-code}" if code < 0 else f"exit code {code}"
        return AgentResult(
            ok=False, error=f"command {program!r} failed with {reason}", details=details
        )
    answer = report.answer if report is not None else None
    if answer is None:
        details.update(keep_reply(job, stdout, is_answer=False))
    else:
        details.update(keep_reply(job, answer, is_answer=True))
    return AgentResult(ok=True, details=details)


async def run_keeping_stdout(
    argv: list[str], cwd: str, env: Mapping[str, str], keeper: StdoutKeeper
) -> int:
    """Run ``argv`` to its end with its stdout fed to ``keeper``; its exit status.

    ``OSError`` if it cannot start. Cancelled, it passes SIGTERM on to the command, waits for
    its exit, and re-raises.
    """
    read_fd, write_fd = os.pipe()
    try:
        proc = start_command(argv, cwd, env, write_fd)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)  # the command has its own copy: EOF comes when it closes it
    async with reading_into(read_fd, keeper):
        return await wait_or_stop(proc)


def start_command(
    argv: list[str], cwd: str, env: Mapping[str, str], stdout_fd: int
) -> subprocess.Popen[bytes]:
    """Start ``argv``, its stdout on ``stdout_fd``. Popen's fork and exec take a millisecond
    or two and block nothing else; ``exit_of`` waits for the exit without a thread."""
    return subprocess.Popen(
        argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=stdout_fd
    )


async def wait_or_stop(proc: subprocess.Popen[bytes]) -> int:
    try:
        return await exit_of(proc)
    except asyncio.CancelledError:
        # The worker is stopping: pass SIGTERM on and give the command its exit. (Popen
        # does nothing once it has reaped the command: its pid may be another's by then.)
        proc.send_signal(signal.SIGTERM)
        await exit_of(proc)
        raise


async def exit_of(proc: subprocess.Popen[bytes]) -> int:
    """Wait for ``proc`` to exit, and reap it; its ``returncode``.

    asyncio's own subprocesses start a thread per child to wait for it (its default child
    watcher on 3.11): a few milliseconds of every command task. A pidfd becomes readable when
    its process exits, so the loop waits for it as for any other fd.
    """
    if proc.poll() is not None:
        return proc.returncode
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # no pidfd (Linux before 5.3): a thread waits instead
        return await asyncio.to_thread(proc.wait)
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_exit)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    return proc.wait()


@contextlib.asynccontextmanager
async def reading_into(read_fd: int, keeper: StdoutKeeper) -> AsyncIterator[None]:
    """Feed what arrives on ``read_fd`` to ``keeper`` while the block runs, then until EOF
    for at most ``DRAIN_SECONDS`` more; closes ``read_fd``."""
    loop = asyncio.get_running_loop()
    at_eof = loop.create_future()

    def on_readable() -> None:
        try:
            chunk = os.read(read_fd, READ_CHUNK_BYTES)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            keeper.feed(chunk)
        else:
            loop.remove_reader(read_fd)
            if not at_eof.done():
                at_eof.set_result(None)

    os.set_blocking(read_fd, False)
    loop.add_reader(read_fd, on_readable)
    try:
        yield
    finally:
        # Also when cancelled: what a stopping agent prints last is often what explains it.
        try:
            await asyncio.wait({at_eof}, timeout=DRAIN_SECONDS)
        finally:
            loop.remove_reader(read_fd)
            os.close(read_fd)
            at_eof.cancel()


def usage_details(job: Job, report: CliReport) -> dict[str, Any]:
    """The model, usage and cost an llm task reports, from what an agent CLI printed."""
    if report.problem is not None:
        return {"usage_error": report.problem}
    assert job.agent.usage is not None
    model = declared_model(job, job.agent.usage, report.model)
    cost = report.cost_usd
    if cost is None and model in job.prices:
        per_input, per_output = job.prices[model]
        cost = (report.prompt_tokens * per_input + report.completion_tokens * per_output) / 1e6
    return {
        "model": model,
        "usage": {
            "prompt_tokens": report.prompt_tokens,
            "completion_tokens": report.completion_tokens,
        },
        "cost_usd": cost,
    }


def declared_model(job: Job, usage_format: UsageFormat, reported: str | None) -> str:
    """``provider/model``: as the CLI reported it, else as the agent declares it."""
    if reported:
        return f"{PROVIDER_OF[usage_format]}/{reported}"
    if job.agent.model:
        return job.agent.model[0]
    return f"{PROVIDER_OF[usage_format]}/unknown"


def keep_reply(job: Job, reply: str, *, is_answer: bool) -> dict[str, Any]:
    """Write the file blocks of ``reply`` when the agent asks for it (keeping the reply as
    ``response.md``, as an llm task does); else keep it as ``response.md`` only when it is an
    answer read out of stdout (stdout itself is ``stdout.txt`` already)."""
    workspace = Path(job.workspace)
    if job.agent.reply is ReplyMode.FILES:
        report = write_reply_files(workspace, reply, record_dir=job.records_dir)
        return {
            "files_written": list(report.written),
            "refused": [{"path": r.path, "reason": r.reason} for r in report.refused],
        }
    if is_answer:
        safe_write(job.records_dir, RESPONSE_FILE, reply.encode("utf-8"))
    return {}
