"""A repository on disk: where it lives, its lock, and the ref verbs the other modules use.

``Repository.open`` checks that a path is the top level of a git repository (a checkout for
the user's repository; a bare one is allowed only when asked, for remotes). Refs are read
with probes that take no optional locks; refs are changed only under the repository's
``RepoLock``, and always with the value they are expected to hold (``update-ref NEW OLD``),
so a change made meanwhile by anyone is detected rather than overwritten.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from swarmd.errors import GitError
from swarmd.git.errors import GitCommandError, NotARepositoryError
from swarmd.git.lock import DEFAULT_LOCK_TIMEOUT_SECONDS, RepoLock
from swarmd.git.runner import GitResult, GitRunner

# What ``git check-ref-format --branch`` refuses, checked here so a bad name fails before
# anything is locked or created: control characters, space ~ ^ : ? * [ \, "..", "@{", "//".
_BAD_BRANCH = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


class Repository:
    """One git repository: its top level (or bare dir), its common dir and its lock."""

    def __init__(
        self, path: Path, common_dir: Path, *, bare: bool, runner: GitRunner, lock: RepoLock
    ) -> None:
        self.path = path
        self.common_dir = common_dir
        self.bare = bare
        self.runner = runner
        self.lock = lock

    def __repr__(self) -> str:
        return f"Repository({str(self.path)!r}, bare={self.bare})"

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        runner: GitRunner | None = None,
        allow_bare: bool = False,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
    ) -> Repository:
        """The repository whose top level is ``path``; ``NotARepositoryError`` otherwise.

        A path inside a repository but not its top level is refused too: git would quietly
        find an enclosing repository (a home directory under version control, say).
        """
        runner = runner or GitRunner()
        where = Path(os.path.abspath(path))
        if not where.is_dir():
            raise NotARepositoryError(f"{where} is not a directory")
        try:
            common, bare, in_git_dir = runner.run(
                where,
                "rev-parse",
                "--path-format=absolute",
                "--git-common-dir",
                "--is-bare-repository",
                "--is-inside-git-dir",
                read_only=True,
            ).text.splitlines()[:3]
        except GitCommandError as exc:
            raise NotARepositoryError(f"{where} is not a git repository") from exc
        is_bare = bare == "true"
        if is_bare:
            top = Path(common)
            if not allow_bare:
                raise NotARepositoryError(f"{where} is a bare repository; a checkout is needed")
        elif in_git_dir == "true":
            raise NotARepositoryError(f"{where} is inside a .git directory, not a checkout")
        else:
            top = Path(runner.run(where, "rev-parse", "--show-toplevel", read_only=True).line())
        if os.path.realpath(top) != os.path.realpath(where):
            raise NotARepositoryError(
                f"{where} is not the top level of a git repository ({top} is)"
            )
        common_dir = Path(common)
        return cls(
            where,
            common_dir,
            bare=is_bare,
            runner=runner,
            lock=RepoLock.for_common_dir(common_dir, timeout=lock_timeout),
        )

    def git(
        self,
        *args: str,
        cwd: Path | None = None,
        stdin: bytes | None = None,
        accept: Sequence[int] = (0,),
    ) -> GitResult:
        """Run a git command that may write (in ``cwd``, by default the repository itself)."""
        return self.runner.run(cwd or self.path, *args, stdin=stdin, accept=accept)

    def probe(
        self,
        *args: str,
        cwd: Path | None = None,
        stdin: bytes | None = None,
        accept: Sequence[int] = (0,),
    ) -> GitResult:
        """Run a read-only git command: no optional locks, so it never rewrites an index."""
        return self.runner.run(cwd or self.path, *args, stdin=stdin, read_only=True, accept=accept)

    def resolve_commit(self, ref: str) -> str:
        """The full id of the commit ``ref`` names (pin a base with it); ``GitError`` if none."""
        _refuse_option(ref, "a ref")
        result = self.probe("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", accept=(0, 1))
        if result.returncode != 0:
            raise GitError(f"{ref!r} does not name a commit in {self.path}")
        return result.line()

    def branch_tip(self, branch: str) -> str | None:
        """The commit at ``refs/heads/<branch>``, or ``None`` when there is no such branch."""
        ref = branch_ref(branch)
        result = self.probe("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", accept=(0, 1))
        return result.line() if result.returncode == 0 else None

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether ``ancestor`` is reachable from ``descendant`` (a commit is its own ancestor)."""
        result = self.probe("merge-base", "--is-ancestor", ancestor, descendant, accept=(0, 1))
        return result.returncode == 0

    def merge_base(self, one: str, other: str) -> str | None:
        """The best common ancestor of two commits, or ``None`` when they share none."""
        result = self.probe("merge-base", one, other, accept=(0, 1))
        return result.line() if result.returncode == 0 else None

    def commit_tree(self, tree: str, parents: Sequence[str], message: str) -> str:
        """A new commit of ``tree`` on ``parents``, by the runner's identity; no ref moves."""
        parent_args = [arg for parent in parents for arg in ("-p", parent)]
        result = self.git(
            "commit-tree", "--no-gpg-sign", tree, *parent_args, "-F", "-", stdin=message.encode()
        )
        return result.line()

    def update_branch(
        self, branch: str, new: str, old: str | None, *, message: str, cwd: Path | None = None
    ) -> bool:
        """Move ``branch`` from ``old`` (``None``: create it) to ``new``, under the lock.

        ``False`` when the branch was not at ``old``: someone moved it first, and nothing was
        changed. ``cwd`` is the worktree whose HEAD follows the branch, for its reflog.
        """
        ref = branch_ref(branch)
        with self.lock:
            # update-ref checks OLD itself (an empty OLD: the ref must not exist yet), also
            # against writers outside our lock such as the user's own git.
            try:
                self.git("update-ref", "-m", message, ref, new, old or "", cwd=cwd)
            except GitCommandError:
                if self.branch_tip(branch) != old:
                    return False
                raise
        return True

    def delete_branch(self, branch: str, expected: str) -> bool:
        """Delete ``branch`` if it is still at ``expected``, under the lock; whether it was."""
        with self.lock:
            try:
                self.git("update-ref", "-d", branch_ref(branch), expected)
            except GitCommandError:
                if self.branch_tip(branch) != expected:
                    return False
                raise
        return True

    def gc(self) -> None:
        """Let git pack and prune what it thinks worth it, under the lock.

        Every other command runs with automatic gc off, so a gc never races a worktree add.
        """
        with self.lock:
            self.git("gc", "--auto", "--quiet")


def branch_ref(branch: str) -> str:
    """``refs/heads/<branch>``; ``GitError`` for a name git would refuse."""
    problem = branch_name_problem(branch)
    if problem:
        raise GitError(f"{branch!r} is not a valid branch name: it {problem}")
    return f"refs/heads/{branch}"


def branch_name_problem(branch: str) -> str | None:
    """Why git would refuse ``branch`` as a branch name, or ``None`` when it is fine."""
    if not branch:
        return "is empty"
    if branch.startswith(("-", "/")) or branch.endswith(("/", ".", ".lock")):
        return "starts or ends with a character git refuses"
    if _BAD_BRANCH.search(branch) or branch == "@":
        return "holds a character or sequence git refuses"
    if any(part.startswith(".") or part.endswith(".lock") for part in branch.split("/")):
        return "has a part starting with '.' or ending with '.lock'"
    return None


def task_branch(prefix: str, ticket: int | str, task: str) -> str:
    """The branch of one task: ``<prefix>/<ticket>/<task>`` (``swarmd/42/html``)."""
    name = f"{prefix}/{ticket}/{task}"
    branch_ref(name)
    return name


def _refuse_option(value: str, what: str) -> None:
    # A value starting with "-" would be read by git as an option.
    if not value or value.startswith("-"):
        raise GitError(f"{value!r} is not {what}")
