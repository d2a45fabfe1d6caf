"""Turns a claimed task into a running worker: resolves its agent, paths, limits and secrets.

The one place that knows the home's layout for a task::

    work/<ticket>/<task>/                 the task's workspace (the worker's cwd)
    outputs/<ticket>/<task>.tar.gz        its archive
    logs/attempts/<ticket>/<task>.<n>.log its worker's stdout and stderr
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from swarmd.agents.registry import AgentLookup
from swarmd.home import HomeLayout
from swarmd.models import ClaimedTask, Clock, Task
from swarmd.spawn.groups import SYSTEMD_VARIABLE_PREFIXES, scrub_environment
from swarmd.spawn.session import CallHandler, WorkerSession
from swarmd.spawn.spawners import ExecSpawner, WorkerSpawner
from swarmd.wire.agent import AgentDef, AgentKind
from swarmd.wire.job import Job, LLMSettings


@dataclass(frozen=True, slots=True)
class LaunchSettings:
    """What the launcher needs from ``Settings``, as plain values."""

    layout: HomeLayout
    worker_timeout_seconds: float
    heartbeat_seconds: float
    grace_seconds: float
    model_chain: tuple[str, ...]
    max_fix_rounds: int
    llm: LLMSettings  # provider settings handed to llm workers (keys included)
    # name -> value: what a command agent may be granted by name (``env = [...]``)
    secrets: dict[str, str] = field(default_factory=dict)


class WorkerLauncher:
    def __init__(
        self,
        settings: LaunchSettings,
        registry: AgentLookup,
        base_env: Mapping[str, str],
        *,
        answer_call: CallHandler,
        skip_grace: asyncio.Event,
        spawner: WorkerSpawner | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._env = scrub_environment(base_env)
        self._spawner = spawner or ExecSpawner()
        self._answer_call = answer_call
        self._skip_grace = skip_grace
        self._clock = clock

    def build_job(self, claimed: ClaimedTask, workspace: Path | None = None) -> Job:
        """The job of a claimed task. ``workspace`` is a repository task's worktree: the
        agent works there, needs no inputs copied (its start commit holds its needs' work),
        and leaves no archive (the daemon archives its commit)."""
        task, attempt = claimed.task, claimed.attempt
        agent = self._registry.resolve(task.agent)
        layout = self._settings.layout
        timeout = (
            task.timeout_seconds or agent.timeout_seconds or (self._settings.worker_timeout_seconds)
        )
        # Verify tasks talk to the models too: their fix step asks for repairs.
        is_llm = agent.kind in (AgentKind.LLM, AgentKind.PLANNER, AgentKind.VERIFY)
        return Job(
            ticket_id=task.ticket_id,
            task_id=task.id,
            task=task.name,
            attempt=attempt.number,
            agent=agent,
            workspace=str(workspace or layout.workspace(task.ticket_id, task.name)),
            archive_path=str(layout.task_archive(task.ticket_id, task.name)),
            worktree=workspace is not None,
            records=str(layout.workspace(task.ticket_id, task.name)) if workspace else "",
            deadline=self._clock() + timeout,
            prompt=task.prompt,
            command=task.command,
            checks=task.checks,
            inputs=()
            if workspace
            else tuple((need, str(layout.workspace(task.ticket_id, need))) for need in task.needs),
            model_chain=self.model_chain(task, agent) if is_llm else (),
            heartbeat_seconds=self._settings.heartbeat_seconds,
            fix_rounds=self._settings.max_fix_rounds if agent.kind is AgentKind.VERIFY else 0,
            llm=self._settings.llm if is_llm else None,
            granted_env=self.granted_env(agent),
            prices=dict(self._settings.llm.prices) if agent.usage else {},
            manifest={
                "ticket": task.ticket_id,
                "task": task.name,
                "agent": agent.name,
                "attempt": attempt.number,
                "started_at": attempt.started_at,
            },
        )

    def granted_env(self, agent: AgentDef) -> dict[str, str]:
        """The variables ``agent`` is granted by name that are set; never systemd's."""
        grantable = self._settings.secrets
        return {
            name: grantable[name]
            for name in agent.env
            if name in grantable and not name.startswith(SYSTEMD_VARIABLE_PREFIXES)
        }

    def model_chain(self, task: Task, agent: AgentDef) -> tuple[str, ...]:
        return task.model or agent.model or self._settings.model_chain

    async def launch(self, claimed: ClaimedTask, *, workspace: Path | None = None) -> WorkerSession:
        """Build the job and start its worker; raises ``ProcessError`` if it cannot start."""
        job = self.build_job(claimed, workspace)
        task = claimed.task
        log_path = self._settings.layout.attempt_log(task.ticket_id, task.name, job.attempt)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        session = WorkerSession(
            claimed,
            job,
            answer_call=self._answer_call,
            grace_seconds=self._settings.grace_seconds,
            skip_grace=self._skip_grace,
            log_path=log_path,
            spawner=self._spawner,
        )
        await session.spawn(self._env)
        return session
