"""The daemon's side of one worker: spawn it, hand it its job, serve its calls, stop it.

A ``WorkerSession`` lives exactly as long as its process. Its ``run()`` is one named asyncio
task owned by the supervisor; it returns once the process (and its whole group) is gone and
the channel is drained, leaving the facts (``WorkerExit``) from which the daemon decides how
the attempt ended (``swarmd.daemon.outcome``). The supervisor touches the process only
through the session's verbs.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmd.models import ClaimedTask, ExitReason
from swarmd.spawn.groups import ProcessIdentity, WorkerProcess, terminate_group
from swarmd.spawn.spawners import WorkerSpawner
from swarmd.wire.agent import AgentKind
from swarmd.wire.channel import Channel, ChannelClosed
from swarmd.wire.job import Job
from swarmd.wire.result import AgentResult

CallHandler = Callable[[str, dict[str, Any]], Awaitable[Any]]
"""Answers a worker's ``call`` (method, args) -> value; raising sends the error back."""

_DRAIN_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class WorkerExit:
    """The facts of a finished worker, from which the daemon decides how its attempt ended."""

    task: str
    agent_kind: AgentKind
    result: AgentResult | None  # what the worker reported, if it reported
    kill_reason: ExitReason | None  # why the daemon stopped it, if it did
    kill_detail: str | None
    returncode: int | None  # negative: the signal that ended it
    lost_with_spawner: bool  # it died because the fork server died


class WorkerSession:
    """One worker process running one attempt."""

    def __init__(
        self,
        claimed: ClaimedTask,
        job: Job,
        *,
        answer_call: CallHandler,
        grace_seconds: float,
        skip_grace: asyncio.Event,
        log_path: Path,
        spawner: WorkerSpawner,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.claimed = claimed
        self.job = job
        self.log_path = log_path
        self._spawner = spawner
        self._answer_call = answer_call
        self._grace = grace_seconds
        self._skip_grace = skip_grace
        self._clock = clock
        self.proc: WorkerProcess | None = None
        self.started_at = clock()
        self.last_heartbeat = self.started_at
        self.result: AgentResult | None = None
        self.kill_reason: ExitReason | None = None
        self.kill_detail: str | None = None
        self.returncode: int | None = None
        self._kill_requested = asyncio.Event()
        self._channel: Channel | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self._result_callbacks: list[Callable[[], None]] = []

    @property
    def token(self) -> str:
        return self.claimed.attempt.token

    @property
    def ref(self) -> str:
        return self.claimed.task.ref

    async def spawn(self, env: Mapping[str, str]) -> WorkerProcess:
        """Spawn the worker process with its end of the channel, and send the job."""
        parent_sock, child_sock = socket.socketpair()
        try:
            channel = await Channel.from_socket(parent_sock)
        except BaseException:
            parent_sock.close()
            child_sock.close()
            raise
        # The job goes first, into the socket: the worker reads it as it starts, rather than
        # after a turn of this loop that waits for the fork server's answer.
        channel.post({"type": "job", "job": self.job.to_dict()})
        try:
            Path(self.job.workspace).mkdir(parents=True, exist_ok=True)
            self.proc = await self._spawner.spawn_worker(
                cwd=Path(self.job.workspace),
                env=env,
                log_path=self.log_path,
                channel_fd=child_sock.fileno(),
                models=self.job.llm is not None,
            )
        except BaseException:
            await channel.close()
            raise
        finally:
            child_sock.close()
        self._channel = channel
        await channel.flush()
        return self.proc

    def add_result_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the worker's result arrives, before its process exits."""
        self._result_callbacks.append(callback)

    @property
    def reported(self) -> bool:
        """The worker has sent its result: all it has left to do is exit."""
        return self.result is not None

    def request_kill(self, reason: ExitReason, detail: str | None = None) -> None:
        """Ask ``run()`` to stop the worker: SIGTERM to its group, the grace, then SIGKILL."""
        if self.kill_reason is None:
            self.kill_reason = reason
            self.kill_detail = detail
        self._kill_requested.set()

    def age(self) -> float:
        return self._clock() - self.started_at

    def silence(self) -> float:
        return self._clock() - self.last_heartbeat

    async def run(self) -> None:
        """Serve the worker until its process exits, then make sure its group is gone."""
        assert self.proc is not None and self._channel is not None
        proc = self.proc
        reader = asyncio.create_task(self._serve_channel(), name=f"channel-{self.ref}")
        killer = asyncio.create_task(self._kill_when_asked(), name=f"killer-{self.ref}")
        try:
            self.returncode = await proc.wait()
        finally:
            killer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await killer
            # The worker may have exited leaving children in its group: they go too.
            proc.signal_group(signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_DRAIN_SECONDS):
                    await asyncio.shield(reader)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            for call in list(self._calls):
                call.cancel()
            await asyncio.gather(*self._calls, return_exceptions=True)
            await self._channel.close()

    async def _kill_when_asked(self) -> None:
        assert self.proc is not None
        await self._kill_requested.wait()
        await terminate_group(self.proc, grace=self._grace, skip_grace=self._skip_grace)

    async def _serve_channel(self) -> None:
        assert self._channel is not None
        channel = self._channel
        try:
            while True:
                message = await channel.receive()
                kind = message.get("type")
                if kind == "heartbeat":
                    self.last_heartbeat = self._clock()
                elif kind == "result":
                    self.last_heartbeat = self._clock()
                    self.result = AgentResult.from_message(message)
                    for callback in self._result_callbacks:
                        callback()
                elif kind == "call":
                    call = asyncio.create_task(
                        self._answer(channel, message), name=f"call-{self.ref}"
                    )
                    self._calls.add(call)
                    call.add_done_callback(self._calls.discard)
        except (ChannelClosed, ValueError):
            return

    async def _answer(self, channel: Channel, message: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"type": "reply", "id": message.get("id")}
        try:
            reply["value"] = await self._answer_call(
                str(message.get("method")), dict(message.get("args") or {})
            )
        except Exception as exc:
            reply["error"] = str(exc) or type(exc).__name__
        with contextlib.suppress(ChannelClosed):
            await channel.send(reply)

    def exit_facts(self) -> WorkerExit:
        """What this session saw of the attempt's end, once ``run()`` has returned."""
        return WorkerExit(
            task=self.job.task,
            agent_kind=self.job.agent.kind,
            result=self.result,
            kill_reason=self.kill_reason,
            kill_detail=self.kill_detail,
            returncode=self.returncode,
            lost_with_spawner=self.proc is not None and self.proc.lost_with_spawner,
        )

    # -- what the supervisor asks of a running worker ------------------------------------

    @property
    def attempt(self) -> int:
        return self.claimed.attempt.number

    @property
    def agent(self) -> str:
        return self.claimed.task.agent

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def identity(self) -> ProcessIdentity:
        assert self.proc is not None, "the worker has not been spawned"
        return self.proc.identity

    @property
    def stopping(self) -> bool:
        """A stop was asked for (its reason is ``kill_reason``)."""
        return self.kill_reason is not None

    def past_deadline(self, wall_now: float) -> bool:
        return wall_now > self.job.deadline

    def tree_rss_bytes(self) -> int:
        return self.proc.tree_rss_bytes() if self.proc is not None else 0

    def snapshot(self) -> dict[str, Any]:
        """This worker as ``swarmd status`` shows it."""
        rss, cpu = self.proc.tree_usage() if self.proc is not None else (0, 0.0)
        return {
            "task": self.ref,
            "attempt": self.attempt,
            "agent": self.agent,
            "pid": self.pid,
            "age_s": round(self.age(), 1),
            "rss_bytes": rss,
            "cpu_percent": round(cpu, 1),
            "heartbeat_age_s": round(self.silence(), 1),
            "stopping": self.kill_reason.value if self.kill_reason else None,
        }
