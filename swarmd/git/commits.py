"""The daemon commits a task's work, never the agent: deny rules first, then a fixed identity.

What ``commit_task`` decides, and why:

- **Refused files fail the task.** When any file added or changed since the start commit is
  refused by the ``DenyRules`` (a name like ``.env`` or ``*.pem``, a size over the limit, a
  known secret in its content), nothing is committed, the index is reset so nothing stays
  staged, and ``CommitRefusedError`` lists each path with its reason. Committing the rest
  without them would deliver work that quietly lacks files the agent meant to write; the
  files stay in the worktree for a person to look at.
- **No changes, no commit.** A worktree with nothing new has its HEAD as the task's result:
  the start commit, or the commits the agent made itself.
- **An agent may commit on its own branch**; its commits are kept, and the deny rules apply
  to everything since the start commit, so a secret the agent committed is refused as well.
  An agent that switched the worktree to another branch (or detached HEAD), or moved its
  branch so the start commit is no longer an ancestor, fails with ``TaskBranchError``.
- The commit is made with ``write-tree`` and ``commit-tree`` (no hook can run, nothing is
  signed), and the branch moves by ``update-ref NEW OLD`` under the repository's lock.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from swarmd.git.denylist import DenyRules
from swarmd.git.errors import CommitRefusedError, RefusedFile, TaskBranchError, WorktreeError
from swarmd.git.repository import Repository, branch_ref
from swarmd.git.trailers import TaskTrailers, with_trailers

_GITLINK_MODE = "160000"  # a submodule's commit: no content of ours to scan
_SCAN_CHUNK_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TaskCommit:
    """The result of a task in git terms."""

    commit: str
    """The task's result: the new commit, or HEAD when there was nothing to commit."""
    created: bool
    """Whether the daemon made a commit (``False``: no changes since the agent's last one)."""
    changed_paths: tuple[str, ...]
    """Every path added, changed or deleted since the start commit."""


@dataclass(frozen=True, slots=True)
class _Change:
    path: str
    mode: str
    blob: str
    status: str


def commit_task(
    repo: Repository,
    worktree: Path,
    *,
    branch: str,
    start_commit: str,
    message: str,
    trailers: TaskTrailers,
    rules: DenyRules | None = None,
) -> TaskCommit:
    """Stage everything in ``worktree``, check it against ``rules``, and commit it.

    See the module docstring for what is refused and why. Raises ``CommitRefusedError``,
    ``TaskBranchError`` or ``WorktreeError``; on any of them nothing was committed.
    """
    rules = rules or DenyRules()
    text = with_trailers(message, trailers)
    head = _check_task_branch(repo, worktree, branch, start_commit)
    repo.git("add", "--all", cwd=worktree)
    changes = _changes_since(repo, worktree, start_commit)
    refused = _refused_files(repo, worktree, changes, rules)
    if refused:
        repo.git("reset", "--quiet", cwd=worktree)
        raise CommitRefusedError(refused)
    paths = tuple(change.path for change in changes)
    if not _index_differs_from(repo, worktree, head, changes, start_commit):
        return TaskCommit(head, created=False, changed_paths=paths)
    tree = repo.git("write-tree", cwd=worktree).line()
    commit = repo.commit_tree(tree, [head], text)
    reflog = f"swarmd: commit task {trailers.task}"
    if not repo.update_branch(branch, commit, head, message=reflog, cwd=worktree):
        repo.git("reset", "--quiet", cwd=worktree)
        raise TaskBranchError(f"task branch {branch} moved while its work was being committed")
    return TaskCommit(commit, created=True, changed_paths=paths)


def _index_differs_from(
    repo: Repository, worktree: Path, head: str, changes: Sequence[_Change], start: str
) -> bool:
    if head == start:  # no commits of the agent's: the changes since the start say it all
        return bool(changes)
    result = repo.probe("diff-index", "--cached", "--quiet", head, cwd=worktree, accept=(0, 1))
    return result.returncode == 1


def _check_task_branch(repo: Repository, worktree: Path, branch: str, start: str) -> str:
    """The worktree's HEAD, once it is known to be the task branch, descended from ``start``."""
    if not worktree.is_dir():
        raise WorktreeError(f"task worktree {worktree} does not exist")
    lines = repo.probe(
        "rev-parse",
        "--path-format=absolute",
        "--git-common-dir",
        "HEAD",
        "--symbolic-full-name",
        "HEAD",
        cwd=worktree,
        accept=(0, 128),
    ).text.splitlines()
    if len(lines) < 3 or os.path.realpath(lines[0]) != os.path.realpath(repo.common_dir):
        raise TaskBranchError(f"{worktree} is no longer a worktree of {repo.path}")
    head, ref = lines[1], lines[2]
    if ref != branch_ref(branch):
        where = "a detached HEAD" if ref == "HEAD" else ref.removeprefix("refs/heads/")
        raise TaskBranchError(f"the agent left task branch {branch} for {where} in {worktree}")
    if not repo.is_ancestor(start, head):
        raise TaskBranchError(
            f"the agent moved task branch {branch} off its start commit {start[:12]}"
        )
    return head


def _changes_since(repo: Repository, worktree: Path, start: str) -> list[_Change]:
    """Every path whose staged content differs from ``start`` (the agent's commits included)."""
    fields = repo.probe(
        "diff-index", "--cached", "-z", "--no-renames", start, cwd=worktree
    ).fields()
    changes: list[_Change] = []
    for meta, path in zip(fields[0::2], fields[1::2], strict=True):
        _old_mode, new_mode, _old_blob, new_blob, status = meta.lstrip(":").split(" ")
        changes.append(_Change(path, new_mode, new_blob, status))
    return changes


def _refused_files(
    repo: Repository, worktree: Path, changes: Sequence[_Change], rules: DenyRules
) -> list[RefusedFile]:
    refused: dict[str, RefusedFile] = {}
    kept: list[_Change] = []
    for change in changes:
        if change.status == "D":
            continue
        problem = rules.name_problem(change.path)
        if problem:
            refused[change.path] = RefusedFile(change.path, problem)
        elif change.mode != _GITLINK_MODE:
            kept.append(change)
    sizes = _blob_sizes(repo, worktree, [change.blob for change in kept])
    scanned: list[_Change] = []
    for change in kept:
        problem = rules.size_problem(sizes[change.blob])
        if problem:
            refused[change.path] = RefusedFile(change.path, problem)
        else:
            scanned.append(change)
    if rules.scans_content:
        contents = dict(_read_blobs(repo, worktree, [(c.blob, sizes[c.blob]) for c in scanned]))
        for change in scanned:
            problem = rules.content_problem(contents[change.blob])
            if problem:
                refused[change.path] = RefusedFile(change.path, problem)
    return sorted(refused.values(), key=lambda item: item.path)


def _blob_sizes(repo: Repository, worktree: Path, blobs: Sequence[str]) -> dict[str, int]:
    unique = list(dict.fromkeys(blobs))
    if not unique:
        return {}
    output = repo.probe(
        "cat-file",
        "--batch-check=%(objectname) %(objectsize)",
        cwd=worktree,
        stdin="".join(f"{blob}\n" for blob in unique).encode(),
    ).text
    sizes: dict[str, int] = {}
    for line in output.splitlines():
        blob, _, size = line.partition(" ")
        sizes[blob] = int(size)
    return sizes


def _read_blobs(
    repo: Repository, worktree: Path, blobs: Sequence[tuple[str, int]]
) -> Iterator[tuple[str, bytes]]:
    """Each blob's content, read in chunks so memory stays bounded by ``_SCAN_CHUNK_BYTES``."""
    unique = list(dict.fromkeys(blobs))
    chunk: list[str] = []
    chunk_bytes = 0
    for index, (blob, size) in enumerate(unique):
        chunk.append(blob)
        chunk_bytes += size
        if chunk_bytes >= _SCAN_CHUNK_BYTES or index == len(unique) - 1:
            output = repo.probe(
                "cat-file", "--batch", cwd=worktree, stdin="".join(f"{b}\n" for b in chunk).encode()
            ).stdout
            yield from _parse_batch(output)
            chunk, chunk_bytes = [], 0


def _parse_batch(output: bytes) -> Iterator[tuple[str, bytes]]:
    """``cat-file --batch`` output: ``<id> <type> <size>\\n<content>\\n`` for each object."""
    offset = 0
    while offset < len(output):
        end = output.index(b"\n", offset)
        blob, _type, size = output[offset:end].decode("ascii").split(" ")
        start = end + 1
        yield blob, output[start : start + int(size)]
        offset = start + int(size) + 1
