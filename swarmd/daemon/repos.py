"""The daemon's work on repositories: a worktree per task, the commit and merge of its work,
the delivery of the ticket's branch, and the cleanup that never loses work.

    submit        the base is resolved to a commit once (``swarmd.git.binding``): every task
                  of the ticket starts from it even if the branch moves
    dispatch      ``prepare_worktree``: a branch and worktree under ``$SWARMD_HOME/worktrees``,
                  started at the base (a root task) or at the merge of its needs' commits
    agent exits 0 ``commit_task`` (deny rules, trailers, hooks off) then ``merge_task`` into
                  the ticket's branch without a checkout; the commit is recorded in the store
                  between the two, so a daemon that dies there completes the merge on restart
    finish        ``deliver``: a verified bundle of base..branch, one patch per commit, the
                  task -> commits map; then push, or push and open a pull request
    cleanup       a worktree goes only when clean and merged; a conflict's is locked and kept

Everything here is synchronous git: the daemon calls it in a thread.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from swarmd.git import (
    DenyRules,
    GitRunner,
    Identity,
    MergeResult,
    Reconciliation,
    Removal,
    Repository,
    TaskCommit,
    TaskTrailers,
    add_worktree,
    bundle,
    commit_task,
    commits_between,
    commits_by_task,
    format_patches,
    lock_worktree,
    merge_into,
    push,
    reconcile_worktrees,
    remove_worktree,
    start_point,
)
from swarmd.git.binding import RepoBinding
from swarmd.git.registry import ForgeEntry, RepoEntry
from swarmd.home import HomeLayout

DELIVERY_DIR = "repository"
"""Where a delivery archive keeps the bundle and the patches."""


@dataclass(frozen=True, slots=True)
class PreparedWorktree:
    path: Path
    branch: str
    start: str


@dataclass(frozen=True, slots=True)
class RepoDelivery:
    """What a delivery made of a ticket's branch."""

    branch: str
    base: str
    head: str | None  # None: no task changed anything
    files: dict[str, Path] = field(default_factory=dict)  # archive name -> file
    tasks: dict[str, list[str]] = field(default_factory=dict)  # task -> its commits
    pushed_to: str | None = None
    pull_request: str | None = None

    def manifest(self) -> dict[str, Any]:
        return {
            "branch": self.branch,
            "base": self.base,
            "head": self.head,
            "tasks": self.tasks,
            "pushed_to": self.pushed_to,
            "pull_request": self.pull_request,
        }


class RepoWork:
    """Git on behalf of the daemon, one ``Repository`` (and its lock) per path."""

    def __init__(
        self,
        layout: HomeLayout,
        *,
        secrets: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        identity: Identity | None = None,
    ) -> None:
        self._layout = layout
        self._secrets = tuple(secrets)
        self._env = dict(env or {"PATH": os.defpath})
        self._identity = identity or Identity()
        self._repos: dict[tuple[Path, bool], Repository] = {}
        self._opening = threading.Lock()

    def repository(self, entry: RepoEntry) -> Repository:
        key = (entry.path, entry.run_hooks)
        with self._opening:
            if key not in self._repos:
                runner = GitRunner(
                    identity=self._identity, inherited_env=self._env, run_hooks=entry.run_hooks
                )
                self._repos[key] = Repository.open(entry.path, runner=runner)
            return self._repos[key]

    def worktree_path(self, ticket_id: int, task: str) -> Path:
        return self._layout.worktree(ticket_id, task)

    # -- dispatch -------------------------------------------------------------------------

    def prepare_worktree(
        self, binding: RepoBinding, ticket_id: int, task: str, upstreams: Sequence[str]
    ) -> PreparedWorktree:
        """The task's worktree, at its start: the base, or the merge of its upstreams.

        ``MergeConflictError`` when the upstreams do not merge. A worktree left by an
        earlier attempt is reset to the start: what that attempt did stays in the branch's
        reflog, never in the next attempt's way.
        """
        repo = self.repository(binding.entry)
        branch = binding.task_branch(ticket_id, task)
        start = start_point(
            repo,
            binding.base_commit,
            upstreams,
            message=f"swarmd: start of {ticket_id}.{task}, merging its needs",
        )
        path = self.worktree_path(ticket_id, task)
        if not path.exists() and repo.branch_tip(branch) is not None:
            # The branch of an earlier attempt outlived its folder (removed by hand, or
            # pruned at start-up): check it out again, then reset it like any retry.
            path.parent.mkdir(parents=True, exist_ok=True)
            with repo.lock:
                repo.git("worktree", "add", "--quiet", "--no-checkout", str(path), branch)
        if path.exists():
            repo.git("checkout", "--quiet", "--force", "-B", branch, start, cwd=path)
            repo.git("clean", "--quiet", "-fdx", cwd=path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            add_worktree(repo, branch, start, path)
        self._copy_ignored(binding.entry, path)
        return PreparedWorktree(path, branch, start)

    def _copy_ignored(self, entry: RepoEntry, worktree: Path) -> None:
        """Copy the gitignored files the entry lists (``.env.example``-like) from the checkout."""
        for relative in entry.copy_ignored:
            source = entry.path / relative
            if source.is_file() and not source.is_symlink():
                target = worktree / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)

    # -- the agent's work -----------------------------------------------------------------

    def commit_task(
        self, binding: RepoBinding, ticket_id: int, task: str, attempt: int, start: str
    ) -> TaskCommit:
        """Commit what the agent left in its worktree. ``CommitRefusedError`` names what the
        deny rules refused; ``TaskBranchError`` an agent that moved or left its branch."""
        entry = binding.entry
        return commit_task(
            self.repository(entry),
            self.worktree_path(ticket_id, task),
            branch=binding.task_branch(ticket_id, task),
            start_commit=start,
            message=f"{task}: the work of task {task} of ticket {ticket_id}",
            trailers=TaskTrailers(ticket=ticket_id, task=task, attempt=attempt),
            rules=DenyRules(max_file_bytes=entry.max_file_mb * 1024 * 1024, secrets=self._secrets),
        )

    def merge_task(
        self, binding: RepoBinding, ticket_id: int, task: str, commit: str
    ) -> MergeResult:
        """Merge a task's commit into the ticket's branch; ``MergeConflictError`` names files."""
        return merge_into(
            self.repository(binding.entry),
            binding.ticket_branch(ticket_id),
            commit,
            create_at=binding.base_commit,
            message=f"swarmd: merge task {task} into ticket {ticket_id}",
        )

    def keep_for_person(self, binding: RepoBinding, ticket_id: int, task: str, why: str) -> Path:
        """Lock the task's worktree so no cleanup or prune takes it; its path."""
        path = self.worktree_path(ticket_id, task)
        if path.exists():
            lock_worktree(self.repository(binding.entry), path, why)
        return path

    # -- the ticket's end -----------------------------------------------------------------

    def deliver(
        self,
        binding: RepoBinding,
        ticket_id: int,
        staging: Path,
        *,
        publish: bool = True,
        open_pull_request: Callable[[str, str], str] | None = None,
    ) -> RepoDelivery:
        """Bundle and patches of base..branch under ``staging/content``; with ``publish``,
        push (``push``, ``pr``) and open a pull request (``pr``:
        ``open_pull_request(branch, base_ref) -> url``)."""
        repo = self.repository(binding.entry)
        branch = binding.ticket_branch(ticket_id)
        head = repo.branch_tip(branch)
        if head is None or head == binding.base_commit:
            return RepoDelivery(branch=branch, base=binding.base_commit, head=None)
        target = staging / "content" / DELIVERY_DIR
        target.mkdir(parents=True, exist_ok=True)
        made = bundle(repo, binding.base_commit, branch, target / "branch.bundle")
        patches = format_patches(repo, binding.base_commit, branch, target / "patches")
        by_task = commits_by_task(commits_between(repo, binding.base_commit, head))
        files = {f"{DELIVERY_DIR}/branch.bundle": made.path}
        files.update({f"{DELIVERY_DIR}/patches/{p.name}": p for p in patches})
        delivery = RepoDelivery(
            branch=branch,
            base=binding.base_commit,
            head=head,
            files=files,
            tasks={
                name or "(merges)": [c.commit for c in commits]
                for name, commits in sorted(by_task.items(), key=lambda item: item[0] or "")
            },
        )
        if publish and binding.deliver in ("push", "pr"):
            pushed = push(repo, binding.entry.remote, branch)
            delivery = replace(delivery, pushed_to=f"{pushed.remote}/{pushed.remote_branch}")
        if publish and binding.deliver == "pr" and open_pull_request is not None:
            url = open_pull_request(branch, binding.base_ref)
            delivery = replace(delivery, pull_request=url)
        return delivery

    def reconcile(self, entry: RepoEntry) -> Reconciliation:
        """Prune the worktrees under ``worktrees/`` whose folders are gone; report strangers."""
        root = self._layout.worktree(0, "x").parent.parent
        owned = [task for ticket in _folders(root) for task in _folders(ticket)]
        return reconcile_worktrees(self.repository(entry), root, owned)

    def clean_up(self, binding: RepoBinding, ticket_id: int, tasks: Sequence[str]) -> list[Removal]:
        """Remove the ticket's task worktrees and branches that hold nothing unmerged."""
        repo = self.repository(binding.entry)
        merged_into = binding.ticket_branch(ticket_id)
        if repo.branch_tip(merged_into) is None:
            merged_into = binding.base_commit
        removals = []
        for task in tasks:
            path = self.worktree_path(ticket_id, task)
            if path.exists():
                removals.append(remove_worktree(repo, path, merged_into=merged_into))
        parent = self._layout.worktree(ticket_id, "x").parent
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
        return removals


def _folders(path: Path) -> list[Path]:
    try:
        return [entry for entry in path.iterdir() if entry.is_dir()]
    except OSError:
        return []


def open_forge_pull_request(
    forge: ForgeEntry, token: str, *, branch: str, base: str, title: str, body: str
) -> str:
    """Open a draft pull request of ``branch`` into ``base``; its URL."""
    import httpx

    from swarmd.git.forges import GiteaForge, GitHubForge, PullRequestDraft

    owner, name = forge.repository.split("/", 1)
    draft = PullRequestDraft(
        owner=owner, repo=name, title=title, head=branch, base=base, body=body, draft=True
    )
    with httpx.Client(trust_env=False) as client:
        if forge.kind == "github":
            return (
                GitHubForge(client=client, token=token, api_url=forge.api_url)
                .open_pull_request(draft)
                .url
            )
        return (
            GiteaForge(client=client, token=token, base_url=forge.api_url)
            .open_pull_request(draft)
            .url
        )
