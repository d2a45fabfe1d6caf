"""The queue's records of tickets that work on a repository: the binding (repository,
pinned base, delivery) each such ticket was submitted with, each task's result commit and
whether it is merged, and what the delivery made (the branch's head, a pull request).

The store knows nothing of git: commits are strings it keeps, in the same short
transactions as everything else, fenced by the attempt's token where an attempt writes.
"""

from __future__ import annotations

import json
from typing import Any

from swarmd.errors import StaleAttemptError
from swarmd.store.backend import Transaction
from swarmd.store.reads import StoreReads
from swarmd.store.rows import attempt_id_of

SELECT_BINDING = "SELECT binding FROM repo_tickets WHERE ticket_id = ?"

RECORD_TASK_COMMIT = """
    INSERT INTO task_commits (task_id, attempt_id, commit_id, merged)
    SELECT task_id, id, ?, 0 FROM attempts
    WHERE id = ? AND token = ? AND ended_at IS NULL
    ON CONFLICT (task_id) DO UPDATE
        SET attempt_id = excluded.attempt_id, commit_id = excluded.commit_id, merged = 0
    RETURNING task_id
"""

MARK_MERGED = "UPDATE task_commits SET merged = 1 WHERE attempt_id = ? RETURNING task_id"

COMMIT_OF_ATTEMPT = "SELECT commit_id, merged FROM task_commits WHERE attempt_id = ?"

COMMITS_OF_TICKET = """
    SELECT tasks.name, task_commits.commit_id FROM task_commits
    JOIN tasks ON tasks.id = task_commits.task_id
    WHERE tasks.ticket_id = ? AND task_commits.merged = 1
"""

RECORD_DELIVERY = """
    UPDATE repo_tickets SET head_commit = ?, pull_request = COALESCE(?, pull_request)
    WHERE ticket_id = ?
"""

BINDINGS_IN_PROGRESS = """
    SELECT repo_tickets.binding FROM repo_tickets
    JOIN tickets ON tickets.id = repo_tickets.ticket_id
    WHERE tickets.delivered_at IS NULL
"""

SELECT_DELIVERY = "SELECT head_commit, pull_request FROM repo_tickets WHERE ticket_id = ?"


class RepoRecords(StoreReads):
    async def ticket_repo(self, ticket_id: int) -> dict[str, Any] | None:
        """The repository binding ``ticket_id`` was submitted with; None for other tickets."""
        row = await self._db.read(lambda txn: txn.fetch_one(SELECT_BINDING, (ticket_id,)))
        return None if row is None else dict(json.loads(row[0]))

    async def record_task_commit(self, token: str, commit: str) -> None:
        """Keep the commit the open attempt ``token`` made, before it is merged."""
        attempt_id = attempt_id_of(token)

        def record(txn: Transaction) -> None:
            if txn.fetch_one(RECORD_TASK_COMMIT, (commit, attempt_id, token)) is None:
                raise StaleAttemptError(f"attempt {token.partition('.')[0]} is not open")

        await self._db.write(record)

    async def mark_commit_merged(self, attempt_id: int) -> None:
        await self._db.write_one(MARK_MERGED, (attempt_id,))

    async def commit_of_attempt(self, attempt_id: int) -> tuple[str, bool] | None:
        """(commit, merged) recorded by an attempt; None when it recorded none."""
        row = await self._db.read(lambda txn: txn.fetch_one(COMMIT_OF_ATTEMPT, (attempt_id,)))
        return None if row is None else (str(row[0]), bool(row[1]))

    async def merged_commits(self, ticket_id: int) -> dict[str, str]:
        """Task name -> its merged result commit, for the ticket's tasks that have one."""
        rows = await self._db.read(lambda txn: txn.fetch(COMMITS_OF_TICKET, (ticket_id,)))
        return {str(row[0]): str(row[1]) for row in rows}

    async def bindings_in_progress(self) -> list[dict[str, Any]]:
        """The repository bindings of tickets not yet delivered (running, or owed one)."""
        rows = await self._db.read(lambda txn: txn.fetch(BINDINGS_IN_PROGRESS))
        return [dict(json.loads(row[0])) for row in rows]

    async def record_repo_delivery(
        self, ticket_id: int, *, head: str | None, pull_request: str | None = None
    ) -> None:
        await self._db.write_one(RECORD_DELIVERY, (head, pull_request, ticket_id))

    async def repo_delivery(self, ticket_id: int) -> tuple[str | None, str | None]:
        """(head commit, pull request URL) of the ticket's delivery, when made."""
        row = await self._db.read(lambda txn: txn.fetch_one(SELECT_DELIVERY, (ticket_id,)))
        return (None, None) if row is None else (row[0], row[1])
