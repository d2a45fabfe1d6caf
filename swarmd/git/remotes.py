"""Push and fetch, through the remote's own configuration.

A remote is named, never given as a URL: its address and credentials come from the
repository's and the user's git config (their credential helper, ``url.*.insteadOf``, ssh
settings), so no token ever appears on a command line or in a URL swarmd builds. Both verbs
change refs (the remote-tracking ones), so they run under the repository's lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from swarmd.errors import GitError
from swarmd.git.repository import Repository, branch_ref

DEFAULT_NETWORK_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class PushResult:
    """What was pushed where."""

    remote: str
    branch: str
    remote_branch: str
    commit: str


def push(
    repo: Repository,
    remote: str,
    branch: str,
    *,
    remote_branch: str | None = None,
    timeout: float = DEFAULT_NETWORK_TIMEOUT_SECONDS,
) -> PushResult:
    """Push ``branch`` to ``remote`` (as ``remote_branch``, by default the same name).

    Never forced: a remote branch that moved elsewhere is a ``GitCommandError`` naming the
    rejection. Hooks stay off unless the runner was built with them.
    """
    check_remote(repo, remote)
    target = remote_branch or branch
    refspec = f"{branch_ref(branch)}:{branch_ref(target)}"
    with repo.lock:
        commit = repo.branch_tip(branch)
        if commit is None:
            raise GitError(f"branch {branch} does not exist in {repo.path}")
        repo.runner.run(
            repo.path, "push", "--quiet", "--", remote, refspec, user_config=True, timeout=timeout
        )
    return PushResult(remote, branch, target, commit)


def fetch(
    repo: Repository,
    remote: str,
    *refspecs: str,
    timeout: float = DEFAULT_NETWORK_TIMEOUT_SECONDS,
) -> None:
    """Fetch from ``remote`` (its configured refspecs, or the given ones), under the lock."""
    check_remote(repo, remote)
    with repo.lock:
        repo.runner.run(
            repo.path,
            "fetch",
            "--quiet",
            "--",
            remote,
            *refspecs,
            user_config=True,
            timeout=timeout,
        )


def check_remote(repo: Repository, remote: str) -> None:
    """``GitError`` unless ``remote`` is the name of a remote configured in the repository."""
    names = repo.probe("remote").text.split()
    if remote not in names:
        known = ", ".join(names) or "none"
        raise GitError(f"{remote!r} is not a configured remote of {repo.path} (known: {known})")
