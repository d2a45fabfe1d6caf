"""The supervisor loop: claim ready tasks, gate, spawn, reap, enforce limits, shut down.

``run()`` reads like a table of contents::

    recover_interrupted()              once, before anything is claimed
    while not stopping:
        close_succeeded()              close the attempts whose workers reported success
        reap_finished()                close the attempts of workers that exited
        enforce_limits()               timeouts, memory, silence: kill the breaching groups
        revoke_cancelled()             kill workers whose task was cancelled elsewhere
        release_retries()              failed tasks whose backoff is over become ready
        dispatch_ready()               claim and spawn while a slot is free and the gate allows
        heartbeat()                    the daemon's own liveness, when due
        wait_for_wakeup()              new work, a worker exit, a timer, or a signal
    shut_down()                        SIGTERM -> grace -> SIGKILL, await all, requeue

It never writes SQL (the store does) and never touches a process directly (the worker
sessions do, through their verbs). Both clocks are injected: ``clock`` (monotonic) for
intervals and ages, ``wall_clock`` for deadlines and retry times, which the store keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from swarmd.daemon.gate import GateDecision, SpawnGate
from swarmd.daemon.lease_timer import LeaseTimer
from swarmd.daemon.outcome import Verdict, decide_verdict
from swarmd.daemon.repo_tasks import RepoTasks
from swarmd.errors import GitError, ProcessError, StaleAttemptError, SwarmdError, TicketError
from swarmd.logs import get_logger
from swarmd.models import ClaimedTask, ExitReason, TaskOutcome, TaskState, TicketState
from swarmd.spawn.groups import ProcessIdentity, is_same_process, kill_stale_group
from swarmd.spawn.launcher import WorkerLauncher
from swarmd.spawn.session import WorkerSession
from swarmd.store import Store

log = get_logger("swarmd.daemon.supervisor")

EXITING_SECONDS = 2.0
"""How long shutdown lets a worker that reported success exit on its own before stopping it."""

_NOT_FAILURES = frozenset({ExitReason.OK, ExitReason.INTERRUPTED, ExitReason.CANCELLED})


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    max_workers: int
    memory_limit_bytes: int | None
    hung_seconds: float
    limit_check_seconds: float = 0.5
    heartbeat_seconds: float = 2.0
    new_work_poll_seconds: float = 0.05
    gate_recheck_seconds: float = 1.0
    only_ticket: int | None = None  # run-ticket without a daemon: this ticket alone
    default_max_attempts: int = 3  # for tasks a planner adds
    lease_seconds: float = 30.0  # on a shared database: how long a claim holds unrenewed


class SupervisorHooks(Protocol):
    """What the daemon does at the supervisor's milestones (sd_notify, heartbeats, delivery)."""

    def ready(self) -> None: ...
    def stopping(self) -> None: ...
    def gate_held(self, decision: GateDecision) -> None: ...
    async def heartbeat(self, snapshot: dict[str, Any]) -> None: ...
    async def ticket_finished(self, ticket_id: int, state: TicketState) -> None: ...
    def task_dead(self, ticket_id: int, ref: str, error: str | None) -> None: ...


class Supervisor:
    def __init__(
        self,
        store: Store,
        gate: SpawnGate,
        launcher: WorkerLauncher,
        config: SupervisorConfig,
        *,
        stop: asyncio.Event,
        hooks: SupervisorHooks,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        repos: RepoTasks | None = None,
    ) -> None:
        self._store = store
        self._gate = gate
        self._launcher = launcher
        self._config = config
        self._stop = stop
        self._hooks = hooks
        self._clock = clock
        self._wall_clock = wall_clock
        self._repos = repos
        self._sessions: dict[str, tuple[WorkerSession, asyncio.Task[None]]] = {}
        # Attempts closed on the worker's report of success while its process still exits.
        self._closed: set[str] = set()
        self._wakeup = asyncio.Event()
        self._new_work = True
        # Set when another process committed (a submit, cancel or retry): only then can a
        # running task have been cancelled, or a retry been made due, behind our back.
        self._outside_change = True
        self._next_heartbeat = 0.0
        self._next_limit_check = 0.0
        self._next_retry_at: float | None = None
        self._gate_held = False
        self._leases = LeaseTimer(config.lease_seconds, config.heartbeat_seconds)
        self.finished_state: TicketState | None = None

    # -- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        watcher = asyncio.create_task(self._watch_for_new_work(), name="watch-new-work")
        try:
            await self.recover_interrupted()
            await self._check_only_ticket()
            self._hooks.ready()
            log.info("supervisor_ready", max_workers=self._config.max_workers)
            while not self._stop.is_set():
                await self.keep_leases()
                await self.close_succeeded()
                await self.reap_finished()
                self.enforce_limits()
                await self.revoke_cancelled()
                await self.release_retries()
                await self.dispatch_ready()
                await self.heartbeat()
                await self.wait_for_wakeup()
        finally:
            self._hooks.stopping()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await self.shut_down()

    async def wait_for_wakeup(self) -> None:
        now = self._clock()
        deadlines = [self._next_heartbeat]
        if self._store.shared:
            deadlines.append(self._leases.next_renewal)
        if self._sessions:
            deadlines.append(self._next_limit_check)
        if self._gate_held:
            deadlines.append(now + self._config.gate_recheck_seconds)
        if self._next_retry_at is not None:
            deadlines.append(now + max(0.0, self._next_retry_at - self._wall_clock()))
        timeout = max(0.0, min(deadlines) - now)
        stop_wait = asyncio.ensure_future(self._stop.wait())
        wake_wait = asyncio.ensure_future(self._wakeup.wait())
        try:
            await asyncio.wait(
                {stop_wait, wake_wait}, timeout=timeout, return_when="FIRST_COMPLETED"
            )
        finally:
            stop_wait.cancel()
            wake_wait.cancel()
        self._wakeup.clear()

    def outside_change(self) -> None:
        """Another process may have committed (a submit, cancel or retry): look now."""
        self._new_work = True
        self._outside_change = True
        self._wakeup.set()

    async def _watch_for_new_work(self) -> None:
        """Notice commits by other processes (submit, cancel, retry) without a thread hop;
        the doorbell (``swarmd.doorbell``) calls ``outside_change`` sooner."""
        seen = self._store.data_version()
        while True:
            await asyncio.sleep(self._config.new_work_poll_seconds)
            current = self._store.data_version()
            if current != seen:
                seen = current
                self.outside_change()

    # -- the steps ----------------------------------------------------------------------

    async def recover_interrupted(self) -> None:
        """Requeue attempts a dead daemon left running, after their groups are confirmed dead."""
        for task, attempt in await self._store.running_attempts():
            if self._repos is not None:
                # It committed its work, then the daemon died before the merge: finish it.
                resumed = await self._repos.complete_recorded(task, attempt)
                if resumed is not None:
                    await self._apply_verdict(attempt.token, task.ref, resumed)
                    continue
            killed = False
            if attempt.pid is not None and attempt.pid_create_time is not None:
                identity = ProcessIdentity(attempt.pid, attempt.pid_create_time)
                killed = kill_stale_group(identity)
                await self._wait_until_gone(identity)
            await self._store.interrupt_attempt(
                attempt.token, reason=ExitReason.INTERRUPTED, error="the daemon stopped"
            )
            log.info(
                "attempt_recovered",
                task=task.ref,
                attempt=attempt.number,
                pid=attempt.pid,
                killed_stale_group=killed,
            )

    async def _wait_until_gone(self, identity: ProcessIdentity, timeout: float = 5.0) -> None:
        # Nothing signals the death of a process we are not the parent of: poll, briefly.
        deadline = self._clock() + timeout
        while is_same_process(identity) and self._clock() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def close_succeeded(self) -> None:
        """Close the attempts whose workers reported success, without waiting for their exit.

        A reported success stands however the process ends after it (``decide_verdict``),
        so its task's dependents need not wait for the worker's exit (its channel closing,
        its group swept, the fork server's report). A repository task's work is committed
        only once its worker has exited: it waits for ``reap_finished``.
        """
        for token, (session, _) in list(self._sessions.items()):
            result = session.result
            if token in self._closed or result is None or not result.ok or session.job.worktree:
                continue
            self._closed.add(token)
            await self._close_attempt(session, decide_verdict(session.exit_facts()))

    async def reap_finished(self) -> None:
        for token, (session, runner) in list(self._sessions.items()):
            if not runner.done():
                continue
            del self._sessions[token]
            if runner.exception() is not None:
                log.error("worker_session_crashed", task=session.ref, exc_info=runner.exception())
            if token in self._closed:
                self._closed.discard(token)
                continue
            verdict = decide_verdict(session.exit_facts())
            if self._repos is not None:
                verdict = await self._repos.settle(session.token, verdict)
            await self._close_attempt(session, verdict)

    def enforce_limits(self) -> None:
        now = self._clock()
        if now < self._next_limit_check:
            return
        self._next_limit_check = now + self._config.limit_check_seconds
        wall = self._wall_clock()
        for session, _ in self._sessions.values():
            if session.stopping:
                continue
            if session.past_deadline(wall):
                self._kill(session, ExitReason.TIMEOUT, "the worker ran past its timeout")
            elif session.silence() > self._config.hung_seconds:
                self._kill(
                    session,
                    ExitReason.HUNG,
                    f"the worker sent no heartbeat for {session.silence():.0f} s",
                )
            elif self._config.memory_limit_bytes is not None:
                rss = session.tree_rss_bytes()
                if rss > self._config.memory_limit_bytes:
                    self._kill(
                        session,
                        ExitReason.MEMORY,
                        f"the worker's process tree used {rss // 2**20} MB, over its "
                        f"{self._config.memory_limit_bytes // 2**20} MB limit",
                    )

    async def revoke_cancelled(self) -> None:
        if not self._outside_change or not self._sessions:
            return
        current = await self._store.current_tokens(list(self._sessions))
        for token, (session, _) in self._sessions.items():
            if token not in current and token not in self._closed and not session.stopping:
                self._kill(session, ExitReason.CANCELLED, "the task was cancelled")

    async def release_retries(self) -> None:
        due = self._next_retry_at is not None and self._next_retry_at <= self._wall_clock()
        if due or self._outside_change:
            # Our own outcomes keep ``_next_retry_at`` up to date (``_after_outcome``).
            self._outside_change = False
            self._new_work = True
            released = await self._store.release_due_retries()
            if released:
                log.info("retries_released", count=len(released))
            self._next_retry_at = await self._store.next_retry_at()

    async def keep_leases(self) -> None:
        """On a shared database: renew this daemon's leases, kill the workers whose lease was
        lost, fence every worker when renewals failed for too long, and reap expired leases
        of dead daemons."""
        if not self._store.shared:
            return
        now = self._clock()
        unrenewed = self._leases.overdue(now)
        if unrenewed is not None:
            self._fence(f"its leases went unrenewed for {unrenewed:.0f} s")
        if not self._leases.due(now):
            return
        # A worker whose success is already recorded is only exiting: it holds no lease.
        open_attempts = [token for token in self._sessions if token not in self._closed]
        try:
            held = await self._store.renew_leases(open_attempts)
            reaped = await self._store.reap_expired_leases()
        except SwarmdError as exc:
            log.warning("lease_renewal_failed", error=str(exc))
            return
        self._leases.renewed(now)
        for token in open_attempts:
            session, _ = self._sessions[token]
            if token not in held and not session.stopping:
                self._kill(session, ExitReason.INTERRUPTED, "its lease expired")
        if reaped:
            log.info("leases_reaped", tasks=len(reaped))
            self._new_work = True

    def _fence(self, why: str) -> None:
        """Kill every worker: their leases may expire before this daemon can renew them."""
        for token, (session, _) in self._sessions.items():
            if token not in self._closed and not session.stopping:
                self._kill(session, ExitReason.INTERRUPTED, f"self-fencing: {why}")

    async def dispatch_ready(self) -> None:
        if not self._new_work:
            return
        if self._store.shared and not self._leases.fresh(self._clock()):
            return
        self._new_work = False
        while self._has_free_slot() and not self._stop.is_set():
            decision = self._gate.check(self._busy_slots())
            self._report_gate(decision)
            if not decision.allowed:
                self._new_work = True  # look again when the gate is rechecked
                return
            claimed = await self._store.claim_ready_task(ticket_id=self._config.only_ticket)
            if claimed is None:
                return
            await self._start_worker(claimed)
            # A burst of spawns takes a while: successes reported meanwhile are closed now.
            await self.close_succeeded()

    def _busy_slots(self) -> int:
        """Workers that hold a slot: those that have not sent their result yet. One that has
        is only exiting (its channel closing, its group swept, its exit reported by the
        fork server): the next task starts meanwhile rather than after it."""
        return sum(1 for session, _ in self._sessions.values() if not session.reported)

    def _has_free_slot(self) -> bool:
        # Exiting workers are bounded too: one that hangs after its result (it is killed
        # as hung) never lets the processes grow past twice the limit.
        limit = self._config.max_workers
        return self._busy_slots() < limit and len(self._sessions) < 2 * limit

    def _result_arrived(self) -> None:
        self._new_work = True
        self._wakeup.set()

    async def heartbeat(self) -> None:
        now = self._clock()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self._config.heartbeat_seconds
        await self._hooks.heartbeat(self.snapshot())

    async def shut_down(self) -> None:
        working = {t: pair for t, pair in self._sessions.items() if t not in self._closed}
        if working:
            log.info("workers_terminating", count=len(working))
        for session, _ in working.values():
            self._kill(session, ExitReason.INTERRUPTED, "the daemon is shutting down")
        # The others reported success and are only exiting: they get a moment to do so on
        # their own, then go the same way.
        exiting = [pair for t, pair in self._sessions.items() if t in self._closed]
        if exiting:
            await asyncio.wait([runner for _, runner in exiting], timeout=EXITING_SECONDS)
        for session, runner in exiting:
            if not runner.done():
                session.request_kill(ExitReason.INTERRUPTED, "the daemon is shutting down")
        runners = [runner for _, runner in self._sessions.values()]
        await asyncio.gather(*runners, return_exceptions=True)
        # Closing attempts must not be lost to a cancellation of the daemon's main task.
        await asyncio.shield(self.reap_finished())
        if runners:
            log.info("workers_stopped", count=len(runners))

    # -- helpers ------------------------------------------------------------------------

    async def _start_worker(self, claimed: ClaimedTask) -> None:
        task = claimed.task
        try:
            workspace = await self._repos.prepare(claimed) if self._repos else None
        except GitError as exc:
            assert self._repos is not None
            log.error("worktree_failed", task=task.ref, error=str(exc))
            await self._apply_verdict(
                claimed.attempt.token, task.ref, self._repos.prepare_failed(exc)
            )
            return
        try:
            session = await self._launcher.launch(claimed, workspace=workspace)
        except (ProcessError, SwarmdError, OSError) as exc:
            if self._repos is not None:
                self._repos.forget(claimed.attempt.token)
            log.error("worker_spawn_failed", task=task.ref, error=str(exc))
            # A task the daemon cannot make a job of (its agent is unknown) would fail the
            # same way on every attempt: it fails once, for good.
            retryable = not isinstance(exc, TicketError)
            await self._apply_verdict(
                claimed.attempt.token,
                task.ref,
                Verdict(ExitReason.ERROR, f"the worker could not start: {exc}", {}, retryable),
            )
            return
        identity = session.identity
        try:
            await self._store.record_spawn(
                claimed.attempt.token, pid=identity.pid, pid_create_time=identity.create_time
            )
        except StaleAttemptError:
            # Closed elsewhere while the worker started (the task was cancelled, or this
            # daemon was paused past its lease and another took the task back): the worker
            # is watched like any other, and stopped at once.
            stale = True
        else:
            stale = False
        self._gate.note_spawn()
        session.add_result_callback(self._result_arrived)
        runner = asyncio.create_task(session.run(), name=f"worker-{task.ref}")
        runner.add_done_callback(lambda _: self._wakeup.set())
        self._sessions[claimed.attempt.token] = (session, runner)
        log.info(
            "worker_started",
            task=task.ref,
            attempt=claimed.attempt.number,
            agent=task.agent,
            pid=identity.pid,
        )
        if stale:
            self._kill(session, ExitReason.INTERRUPTED, "its attempt was closed while it started")

    def _kill(self, session: WorkerSession, reason: ExitReason, detail: str) -> None:
        log.warning("worker_killing", task=session.ref, reason=reason.value, detail=detail)
        session.request_kill(reason, detail)

    def _report_gate(self, decision: GateDecision) -> None:
        """Say once when the gate starts holding, changes its reason, or opens again."""
        changed = self._gate.hold_changed()
        if changed is not None and changed.allowed:
            log.info("gate_released")
        elif changed is not None:
            log.warning("gate_held", reason=changed.reason)
            self._hooks.gate_held(changed)
        self._gate_held = not decision.allowed

    async def _close_attempt(self, session: WorkerSession, verdict: Verdict) -> None:
        details = verdict.details
        # A failed attempt is worth a look (`swarmd logs --level warning`); the rest is news.
        emit = log.info if verdict.reason in _NOT_FAILURES else log.warning
        emit(
            "attempt_finished",
            task=session.ref,
            attempt=session.attempt,
            agent=session.agent,
            model=details.get("model"),
            duration_s=round(session.age(), 3),
            exit_reason=verdict.reason.value,
            error=verdict.error,
            tokens=details.get("usage"),
            pid=session.pid,
        )
        await self._apply_verdict(session.token, session.ref, verdict)

    async def _apply_verdict(self, token: str, ref: str, verdict: Verdict) -> None:
        store = self._store
        try:
            if verdict.reason is ExitReason.OK:
                outcome = await store.complete_attempt(
                    token,
                    result=verdict.details,
                    new_tasks=verdict.new_tasks,
                    default_max_attempts=self._config.default_max_attempts,
                )
            elif verdict.reason in (ExitReason.INTERRUPTED, ExitReason.CANCELLED):
                outcome = await store.interrupt_attempt(
                    token, reason=verdict.reason, error=verdict.error or ""
                )
            else:
                outcome = await store.fail_attempt(
                    token,
                    reason=verdict.reason,
                    error=verdict.error or verdict.reason.value,
                    result=verdict.details,
                    retryable=verdict.retryable,
                )
        except StaleAttemptError:
            # Cancelled or retried while it ran: its result no longer counts, but the
            # attempt itself is still closed.
            log.info("attempt_result_refused", task=ref, reason="stale token")
            with contextlib.suppress(SwarmdError):
                await store.interrupt_attempt(token, reason=ExitReason.CANCELLED, error="stale")
            self._new_work = True
            return
        self._new_work = True
        await self._after_outcome(outcome)

    async def _after_outcome(self, outcome: TaskOutcome) -> None:
        task = outcome.task
        if task.state is TaskState.DEAD:
            log.warning("task_dead", task=task.ref, error=task.last_error)
            self._hooks.task_dead(task.ticket_id, task.ref, task.last_error)
        retry_at = task.retry_at if task.state is TaskState.FAILED else None
        if retry_at is not None and (self._next_retry_at is None or retry_at < self._next_retry_at):
            self._next_retry_at = retry_at
        if outcome.ticket_state is not None and outcome.ticket_state.is_terminal:
            log.info("ticket_finished", ticket=task.ticket_id, state=outcome.ticket_state.value)
            await self._hooks.ticket_finished(task.ticket_id, outcome.ticket_state)
            if task.ticket_id == self._config.only_ticket:
                self.finished_state = outcome.ticket_state
                self._stop.set()

    async def _check_only_ticket(self) -> None:
        if self._config.only_ticket is None:
            return
        ticket = await self._store.get_ticket(self._config.only_ticket)
        if ticket.state.is_terminal:
            self.finished_state = ticket.state
            self._stop.set()

    def snapshot(self) -> dict[str, Any]:
        """The live state for ``swarmd status``: workers and the gate."""
        workers = [session.snapshot() for session, _ in self._sessions.values()]
        last = self._gate.last_decision
        return {
            "pid": os.getpid(),
            "workers": workers,
            "gate": {
                "allowed": last.allowed if last else True,
                "reason": last.reason if last else None,
            },
        }
