"""Repository tickets in the supervisor's loop: the worktree before a task runs, the commit
and merge after it succeeded, and the completion of a merge a dead daemon left undone.

Every git call runs in a thread (``RepoWork`` is synchronous); the store records the task's
commit before the merge, so the merge can always be completed or redone, never lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmd.daemon.outcome import Verdict
from swarmd.daemon.repos import PreparedWorktree, RepoWork, open_forge_pull_request
from swarmd.errors import GitError
from swarmd.git import CommitRefusedError, MergeConflictError, TaskBranchError
from swarmd.git.binding import RepoBinding
from swarmd.home import HomeLayout
from swarmd.logs import get_logger
from swarmd.models import Attempt, ClaimedTask, ExitReason, Task, Ticket, TicketState
from swarmd.outputs import TaskArchiveRef, write_task_archive
from swarmd.store import Store

log = get_logger("swarmd.daemon.repo_tasks")

_REMEMBERED_TICKETS = 4096


@dataclass(frozen=True, slots=True)
class RepoAttempt:
    """An attempt of a repository task that is running in its worktree."""

    claimed: ClaimedTask
    binding: RepoBinding
    worktree: PreparedWorktree


class RepoTasks:
    def __init__(
        self,
        store: Store,
        work: RepoWork,
        layout: HomeLayout,
        *,
        forge_tokens: Mapping[str, str] | None = None,
    ) -> None:
        self._store = store
        self._work = work
        self._layout = layout
        self._forge_tokens = dict(forge_tokens or {})
        self._bindings: dict[int, RepoBinding | None] = {}
        self._running: dict[str, RepoAttempt] = {}

    async def binding(self, ticket_id: int) -> RepoBinding | None:
        """The ticket's repository, read once per ticket (the newest ones are remembered)."""
        if ticket_id not in self._bindings:
            data = await self._store.ticket_repo(ticket_id)
            if len(self._bindings) >= _REMEMBERED_TICKETS:
                del self._bindings[next(iter(self._bindings))]  # the oldest
            self._bindings[ticket_id] = RepoBinding.from_dict(data) if data else None
        return self._bindings[ticket_id]

    async def prepare(self, claimed: ClaimedTask) -> Path | None:
        """The worktree the task runs in; None for a task of a ticket with no repository.

        ``GitError`` (``MergeConflictError`` when its needs do not merge) if it cannot be made.
        """
        task = claimed.task
        binding = await self.binding(task.ticket_id)
        if binding is None:
            return None
        upstreams = await self._upstream_commits(task)
        prepared = await asyncio.to_thread(
            self._work.prepare_worktree, binding, task.ticket_id, task.name, upstreams
        )
        self._running[claimed.attempt.token] = RepoAttempt(claimed, binding, prepared)
        return prepared.path

    async def _upstream_commits(self, task: Task) -> list[str]:
        if not task.needs:
            return []
        merged = await self._store.merged_commits(task.ticket_id)
        return [merged[need] for need in task.needs if need in merged]

    def forget(self, token: str) -> None:
        self._running.pop(token, None)

    def prepare_failed(self, error: GitError) -> Verdict:
        if isinstance(error, MergeConflictError):
            return Verdict(ExitReason.CONFLICT, str(error), {}, retryable=False)
        return Verdict(ExitReason.ERROR, f"its worktree could not be made: {error}", {})

    async def settle(self, token: str, verdict: Verdict) -> Verdict:
        """A repository task succeeded: commit its work and merge it into the ticket's branch.

        Any other verdict, or a task of another ticket, comes back as it was.
        """
        running = self._running.pop(token, None)
        if running is None or verdict.reason is not ExitReason.OK:
            return verdict
        task, attempt = running.claimed.task, running.claimed.attempt
        try:
            made = await asyncio.to_thread(
                self._work.commit_task,
                running.binding,
                task.ticket_id,
                task.name,
                attempt.number,
                running.worktree.start,
            )
        except (CommitRefusedError, TaskBranchError) as exc:
            # The agent would do the same again: a person must look.
            return Verdict(ExitReason.ERROR, str(exc), verdict.details, retryable=False)
        except GitError as exc:
            return Verdict(ExitReason.ERROR, f"committing its work failed: {exc}", verdict.details)
        await self._store.record_task_commit(attempt.token, made.commit)
        return await self._merge(
            running.binding, task, attempt, made.commit, running.worktree.start, verdict.details
        )

    async def complete_recorded(self, task: Task, attempt: Attempt) -> Verdict | None:
        """The verdict of an attempt a dead daemon left between its commit and its merge.

        None when the attempt recorded no commit: it is simply interrupted.
        """
        recorded = await self._store.commit_of_attempt(attempt.id)
        binding = await self.binding(task.ticket_id)
        if recorded is None or binding is None:
            return None
        commit, _ = recorded
        log.info("merge_resumed", task=task.ref, attempt=attempt.number, commit=commit)
        start = binding.base_commit
        return await self._merge(binding, task, attempt, commit, start, {"resumed": True})

    async def _merge(
        self,
        binding: RepoBinding,
        task: Task,
        attempt: Attempt,
        commit: str,
        start: str,
        details: dict[str, Any],
    ) -> Verdict:
        try:
            merged = await asyncio.to_thread(
                self._work.merge_task, binding, task.ticket_id, task.name, commit
            )
        except MergeConflictError as exc:
            kept = await asyncio.to_thread(
                self._work.keep_for_person, binding, task.ticket_id, task.name, str(exc)
            )
            return Verdict(
                ExitReason.CONFLICT,
                f"{exc}; its worktree is kept at {kept}",
                {
                    **details,
                    "git": {"commit": commit, "conflicts": list(exc.paths), "kept": str(kept)},
                },
                retryable=False,
            )
        except GitError as exc:
            return Verdict(ExitReason.ERROR, f"merging its work failed: {exc}", details)
        await self._store.mark_commit_merged(attempt.id)
        git = {
            "commit": commit,
            "branch": merged.branch,
            "merged": merged.kind.value,
            "head": merged.commit,
        }
        await asyncio.to_thread(self._write_task_archive, binding, task, attempt, start, commit)
        return Verdict(ExitReason.OK, None, {**details, "git": git})

    async def reconcile(self) -> None:
        """At start-up: git's worktrees under ``$SWARMD_HOME/worktrees`` against the folders
        there, for each repository with a ticket in progress. A worktree whose folder is gone
        is pruned (its branch, which may hold work, stays); one git does not know is
        reported, never touched; nothing outside that folder is looked at."""
        seen: set[Path] = set()
        for data in await self._store.bindings_in_progress():
            binding = RepoBinding.from_dict(data)
            if binding.entry.path in seen:
                continue
            seen.add(binding.entry.path)
            try:
                found = await asyncio.to_thread(self._work.reconcile, binding.entry)
            except GitError as exc:
                log.warning(
                    "worktrees_not_reconciled", repo=str(binding.entry.path), error=str(exc)
                )
                continue
            for worktree in found.pruned:
                log.info("worktree_pruned", repo=str(binding.entry.path), path=str(worktree.path))
            for worktree in found.unknown:
                log.warning(
                    "worktree_unknown", repo=str(binding.entry.path), path=str(worktree.path)
                )

    # -- the ticket's end -----------------------------------------------------------------

    async def deliver(
        self, ticket: Ticket, tasks: Sequence[Task], staging: Path
    ) -> tuple[TaskArchiveRef | None, dict[str, Any] | None]:
        """The repository part of a ticket's delivery, and what its manifest says of it.

        A bundle of base..branch and a patch per commit, packed as the archive of a pseudo
        task ``repository``; for a ticket that succeeded, the branch pushed (``push``) or
        pushed with a pull request opened (``pr``). (None, None) for other tickets.
        """
        binding = await self.binding(ticket.id)
        if binding is None:
            return None, None
        succeeded = ticket.state is TicketState.SUCCEEDED
        opener = self._pull_request_opener(binding, ticket, tasks) if succeeded else None
        delivered = await asyncio.to_thread(
            self._work.deliver,
            binding,
            ticket.id,
            staging,
            publish=succeeded,
            open_pull_request=opener,
        )
        await self._store.record_repo_delivery(
            ticket.id, head=delivered.head, pull_request=delivered.pull_request
        )
        manifest = {**delivered.manifest(), "repo": binding.entry.name, "deliver": binding.deliver}
        if not delivered.files:
            return None, manifest
        archive = staging / "repository.tar.gz"
        await asyncio.to_thread(
            write_task_archive, staging / "content", archive, manifest={"repository": manifest}
        )
        return TaskArchiveRef(name="repository", state="succeeded", archive=archive), manifest

    def _pull_request_opener(
        self, binding: RepoBinding, ticket: Ticket, tasks: Sequence[Task]
    ) -> Callable[[str, str], str] | None:
        forge = binding.entry.forge
        if forge is None:
            return None
        token = self._forge_tokens.get(forge.token_env)
        if not token:
            raise GitError(f"no token for {forge.kind}: {forge.token_env} is not set")
        lines = [f"Ticket {ticket.id}: {ticket.title}", ""]
        lines += [f"- {task.name}: {task.state.value}" for task in tasks]
        body = "\n".join([*lines, "", "Opened by swarmd."])

        def open_pull_request(branch: str, base: str) -> str:
            return open_forge_pull_request(
                forge, token, branch=branch, base=base, title=ticket.title, body=body
            )

        return open_pull_request

    async def clean_up(self, ticket_id: int, tasks: Sequence[Task]) -> None:
        """Remove the ticket's worktrees that hold nothing unmerged; say why others stay."""
        binding = await self.binding(ticket_id)
        if binding is None:
            return
        removals = await asyncio.to_thread(
            self._work.clean_up, binding, ticket_id, [task.name for task in tasks]
        )
        for removal in removals:
            if not removal.removed:
                log.info(
                    "worktree_kept", ticket=ticket_id, path=str(removal.path), why=removal.reason
                )

    def _write_task_archive(
        self, binding: RepoBinding, task: Task, attempt: Attempt, start: str, commit: str
    ) -> None:
        """The task's archive: its work as one patch (``<task>.patch``), beside swarmd's own
        files of the attempt (``response.md``, ``stdout.txt``...), which the worker kept
        out of the worktree."""
        repo = self._work.repository(binding.entry)
        records = self._layout.workspace(task.ticket_id, task.name)
        records.mkdir(parents=True, exist_ok=True)
        if commit != start:
            patch = repo.git("format-patch", "--stdout", f"{start}..{commit}").text
            (records / f"{task.name}.patch").write_text(patch, encoding="utf-8")
        write_task_archive(
            records,
            self._layout.task_archive(task.ticket_id, task.name),
            manifest={"task": task.name, "agent": task.agent},
        )
