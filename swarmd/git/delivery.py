"""What a ticket delivers from its integration branch: a bundle, patches, and who made what.

A bundle holds the commits between the pinned base and the branch, verified against the
repository before it is handed out; it applies to any clone that has the base. Patches are
``git format-patch`` files that ``git am`` applies on a fresh clone of the base (merge commits
are left out, as format-patch does; the merges swarmd makes are clean, so their parents'
patches apply in order). ``commits_between`` reads each commit's trailers, so a delivery can
list the commits of each task.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from swarmd.errors import GitError
from swarmd.git.repository import Repository, branch_ref
from swarmd.git.trailers import TASK_TRAILER, parse_trailers

_FIELD = "\x1f"


@dataclass(frozen=True, slots=True)
class Bundle:
    """A verified bundle of ``base..branch``."""

    path: Path
    branch: str
    head: str
    base: str


@dataclass(frozen=True, slots=True)
class CommitInfo:
    """One commit of a delivery, with its trailers parsed."""

    commit: str
    parents: tuple[str, ...]
    subject: str
    trailers: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def task(self) -> str | None:
        """The task named by the ``Swarmd-Task`` trailer, or ``None``."""
        return self.trailers.get(TASK_TRAILER)


def bundle(repo: Repository, base: str, branch: str, dest: Path) -> Bundle:
    """Write the commits of ``base..branch`` to the bundle ``dest`` and verify it.

    ``GitError`` when the branch is missing or holds nothing beyond the base (git refuses to
    write an empty bundle).
    """
    base_commit = repo.resolve_commit(base)
    head = repo.branch_tip(branch)
    if head is None:
        raise GitError(f"branch {branch} does not exist in {repo.path}")
    if repo.is_ancestor(head, base_commit):
        raise GitError(f"branch {branch} holds no commits beyond {base_commit[:12]}")
    # git writes <dest>.lock and renames it into place: no half-written bundle is left.
    repo.probe("bundle", "create", "--quiet", str(dest), f"^{base_commit}", branch_ref(branch))
    repo.probe("bundle", "verify", "--quiet", str(dest))
    return Bundle(dest, branch, head, base_commit)


def format_patches(repo: Repository, base: str, branch: str, dest_dir: Path) -> list[Path]:
    """Write one ``git format-patch`` file per non-merge commit of ``base..branch``, in order."""
    base_commit = repo.resolve_commit(base)
    head = repo.branch_tip(branch)
    if head is None:
        raise GitError(f"branch {branch} does not exist in {repo.path}")
    output = repo.probe(
        "format-patch",
        "--no-signature",
        "--output-directory",
        str(dest_dir),
        f"{base_commit}..{head}",
    ).text
    return [Path(line) for line in output.splitlines() if line.strip()]


def commits_between(repo: Repository, base: str, head: str) -> list[CommitInfo]:
    """The commits reachable from ``head`` but not ``base``, oldest first, merges included."""
    base_commit = repo.resolve_commit(base)
    head_commit = repo.resolve_commit(head)
    layout = _FIELD.join(("%H", "%P", "%s", "%(trailers:only,unfold)"))
    records = repo.probe(
        "log",
        "-z",
        "--reverse",
        "--topo-order",
        f"--format={layout}",
        f"{base_commit}..{head_commit}",
    ).fields()
    commits: list[CommitInfo] = []
    for record in records:
        commit, parents, subject, trailers = record.split(_FIELD, 3)
        commits.append(
            CommitInfo(commit, tuple(parents.split()), subject, parse_trailers(trailers))
        )
    return commits


def commits_by_task(commits: list[CommitInfo]) -> dict[str | None, list[CommitInfo]]:
    """The commits grouped by the task their trailers name, in their order.

    Commits no trailer ties to a task (an agent's own commits, a person's) are under ``None``.
    """
    grouped: defaultdict[str | None, list[CommitInfo]] = defaultdict(list)
    for info in commits:
        grouped[info.task].append(info)
    return dict(grouped)
