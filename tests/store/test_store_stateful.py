"""A random walk through the queue's verbs, checking its invariants after every step."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import sqlite3
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from swarmd.errors import InvalidTransitionError, StaleAttemptError
from swarmd.models import (
    ACTIVE_TASK_STATES,
    ExitReason,
    TaskSpec,
    TaskState,
    TicketSpec,
    TicketState,
)
from swarmd.store import Store
from swarmd.store.postgres.dialect import to_postgres
from swarmd.store.transitions import derive_ticket_state
from tests.support.clock import FakeClock
from tests.support.postgres import new_database_url

T = TypeVar("T")

# Passing takes ~10 s; when an invariant breaks, shrinking the failing walk takes longer.
pytestmark = pytest.mark.timeout(600)


@st.composite
def small_dags(draw: st.DrawFn) -> TicketSpec:
    """One to five tasks, each needing each task before it with even odds."""
    count = draw(st.integers(1, 5))
    tasks = []
    for i in range(count):
        needs = tuple(f"t{j}" for j in range(i) if draw(st.booleans()))
        attempts = draw(st.integers(1, 3))
        tasks.append(TaskSpec(name=f"t{i}", needs=needs, max_attempts=attempts))
    return TicketSpec(title="walk", tasks=tuple(tasks))


TASKS_WITH_TWO_OPEN_ATTEMPTS = """
    SELECT task_id FROM attempts WHERE ended_at IS NULL GROUP BY task_id HAVING COUNT(*) > 1
"""
RUNNING_TASKS_WITHOUT_OPEN_CURRENT_ATTEMPT = """
    SELECT t.id FROM tasks AS t
    LEFT JOIN attempts AS a ON a.id = t.current_attempt_id AND a.ended_at IS NULL
    WHERE t.state = 'running' AND a.id IS NULL
"""
STARTED_TASKS_WITH_UNMET_NEEDS = """
    SELECT t.id FROM tasks AS t JOIN edges AS e ON e.task_id = t.id
    JOIN tasks AS n ON n.id = e.need_id
    WHERE t.state IN ('ready', 'running', 'failed', 'succeeded') AND n.state != 'succeeded'
"""
BLOCKED_TASKS = "SELECT id, pending_needs FROM tasks WHERE state = 'blocked'"
STATES_OF_NEEDS = """
    SELECT n.state FROM edges AS e JOIN tasks AS n ON n.id = e.need_id WHERE e.task_id = ?
"""


class QueueWalk(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="swarmd-walk-"))
        location = self.location()
        self.runner = asyncio.Runner()
        self.clock = FakeClock()
        self.store = self.run(
            Store.open(
                location, clock=self.clock, rng=random.Random(0), backoff_base=1, backoff_max=4
            )
        )
        self.db = self.connect(location)
        self.submitted_tasks = 0
        self.tickets: list[int] = []
        self.held_tokens: list[str] = []  # claimed and not yet handed back
        self.returned_tokens: list[str] = []

    def location(self) -> Path | str:
        return self.directory / "swarmd.db"

    def connect(self, location: Path | str) -> Any:
        return sqlite3.connect(location)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def teardown(self) -> None:
        self.db.close()
        self.run(self.store.close())
        self.runner.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def query(self, sql: str, *params: Any) -> list[Any]:
        return self.db.execute(sql, params).fetchall()

    # -- rules ---------------------------------------------------------------------------

    @initialize(spec=small_dags())
    def first_ticket(self, spec: TicketSpec) -> None:
        self.submit(spec)

    @rule(spec=small_dags())
    def submit(self, spec: TicketSpec) -> None:
        result = self.run(self.store.submit_ticket(spec))
        self.tickets.append(result.ticket_id)
        self.submitted_tasks += len(spec.tasks)

    @rule()
    def claim(self) -> None:
        claimed = self.run(self.store.claim_ready_task())
        if claimed is None:
            assert self.query("SELECT COUNT(*) FROM tasks WHERE state = 'ready'") == [(0,)]
            return
        siblings = {t.name: t for t in self.run(self.store.list_tasks(claimed.task.ticket_id))}
        for need in claimed.task.needs:
            assert siblings[need].state is TaskState.SUCCEEDED, f"claimed before {need}"
        self.held_tokens.append(claimed.attempt.token)

    @rule()
    def run_one_task(self) -> None:
        """Claim and complete in one step, so walks get deep into their graphs."""
        held = len(self.held_tokens)
        self.claim()
        # Complete only what was just claimed: an older held token may be stale by now.
        if len(self.held_tokens) > held:
            self.run(self.store.complete_attempt(self.held_tokens.pop()))

    @precondition(lambda self: self.held_tokens)
    @rule(
        data=st.data(),
        verb=st.sampled_from(["complete", "fail", "complete", "interrupt", "fail_for_good"]),
    )
    def hand_back(self, data: st.DataObject, verb: str) -> None:
        token = data.draw(st.sampled_from(self.held_tokens))
        self.held_tokens.remove(token)
        self.returned_tokens.append(token)
        [(task_id, was_open)] = self.query(
            "SELECT task_id, ended_at IS NULL FROM attempts WHERE token = ?", token
        )
        [(state_before, failures_before)] = self.query(
            "SELECT state, failures FROM tasks WHERE id = ?", task_id
        )
        try:
            self.run(self.close_attempt(token, verb))
        except StaleAttemptError:
            assert not was_open, "an open attempt's token was refused"
            return
        assert was_open, "a closed attempt's token was accepted"
        [(state, failures)] = self.query("SELECT state, failures FROM tasks WHERE id = ?", task_id)
        if state_before != "running":  # cancelled while it ran: only the attempt closes
            assert (state, failures) == (state_before, failures_before)
        elif verb == "complete":
            assert (state, failures) == ("succeeded", failures_before)
        elif verb == "interrupt":
            assert (state, failures) == ("ready", failures_before)
        else:
            assert state in ("failed", "dead")
            assert failures == failures_before + 1

    async def close_attempt(self, token: str, verb: str) -> None:
        if verb == "complete":
            await self.store.complete_attempt(token)
        elif verb == "interrupt":
            await self.store.interrupt_attempt(token)
        else:
            await self.store.fail_attempt(
                token, reason=ExitReason.ERROR, error="boom", retryable=verb == "fail"
            )

    @precondition(lambda self: self.returned_tokens)
    @rule(data=st.data())
    def reuse_a_returned_token(self, data: st.DataObject) -> None:
        token = data.draw(st.sampled_from(self.returned_tokens))
        try:
            self.run(self.store.complete_attempt(token))
        except StaleAttemptError:
            return
        raise AssertionError("a token that was handed back completed a task")

    @rule(seconds=st.floats(0, 5))
    def let_time_pass(self, seconds: float) -> None:
        self.clock.advance(seconds)
        for task_id in self.run(self.store.release_due_retries()):
            [(retry_at,)] = self.query("SELECT retry_at FROM tasks WHERE id = ?", task_id)
            assert retry_at is None

    @precondition(lambda self: self.tickets)
    @rule(data=st.data(), one_task=st.booleans())
    def cancel(self, data: st.DataObject, one_task: bool) -> None:
        ticket_id, name = self.pick(data, one_task)
        with contextlib.suppress(InvalidTransitionError):
            self.run(self.store.cancel(ticket_id, name))

    @precondition(lambda self: self.tickets)
    @rule(data=st.data(), one_task=st.booleans())
    def retry(self, data: st.DataObject, one_task: bool) -> None:
        ticket_id, name = self.pick(data, one_task)
        with contextlib.suppress(InvalidTransitionError):
            self.run(self.store.retry(ticket_id, name))

    def pick(self, data: st.DataObject, one_task: bool) -> tuple[int, str | None]:
        ticket_id = data.draw(st.sampled_from(self.tickets))
        if not one_task:
            return ticket_id, None
        names = [
            name for (name,) in self.query("SELECT name FROM tasks WHERE ticket_id = ?", ticket_id)
        ]
        return ticket_id, data.draw(st.sampled_from(names))

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def nothing_is_lost(self) -> None:
        assert self.query("SELECT COUNT(*) FROM tasks") == [(self.submitted_tasks,)]
        depth = self.run(self.store.queue_depth())
        assert sum(depth.values()) == self.submitted_tasks

    @invariant()
    def no_task_has_two_open_attempts(self) -> None:
        assert self.query(TASKS_WITH_TWO_OPEN_ATTEMPTS) == []

    @invariant()
    def running_tasks_hold_their_current_attempt_and_met_needs(self) -> None:
        assert self.query(RUNNING_TASKS_WITHOUT_OPEN_CURRENT_ATTEMPT) == []
        assert self.query(STARTED_TASKS_WITH_UNMET_NEEDS) == []

    @invariant()
    def blocked_tasks_count_their_unmet_needs_and_can_still_run(self) -> None:
        for task_id, pending in self.query(BLOCKED_TASKS):
            needs = [state for (state,) in self.query(STATES_OF_NEEDS, task_id)]
            unmet = [state for state in needs if state != "succeeded"]
            assert pending == len(unmet) > 0
            assert all(TaskState(state) in ACTIVE_TASK_STATES for state in unmet), needs

    @invariant()
    def ticket_state_follows_its_tasks(self) -> None:
        for ticket_id, state, started_at in self.query("SELECT id, state, started_at FROM tickets"):
            counts = dict(
                self.query(
                    "SELECT state, COUNT(*) FROM tasks WHERE ticket_id = ? GROUP BY state",
                    ticket_id,
                )
            )
            active = sum(counts.get(s.value, 0) for s in ACTIVE_TASK_STATES)
            if active:
                expected = TicketState.RUNNING if started_at is not None else TicketState.QUEUED
            else:
                expected = derive_ticket_state(counts)
            assert TicketState(state) is expected, (ticket_id, counts)


class QueueWalkOnPostgres(QueueWalk):
    """The same walk on a database of a real PostgreSQL server."""

    def location(self) -> Path | str:
        return new_database_url()

    def connect(self, location: Path | str) -> Any:
        import psycopg

        return psycopg.connect(str(location), autocommit=True)

    def query(self, sql: str, *params: Any) -> list[Any]:
        cursor = self.db.execute(to_postgres(sql), params)
        return [tuple(row) for row in cursor.fetchall()]


TestQueueWalk = QueueWalk.TestCase
TestQueueWalk.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TestQueueWalkOnPostgres = QueueWalkOnPostgres.TestCase
TestQueueWalkOnPostgres.settings = settings(
    max_examples=30,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
