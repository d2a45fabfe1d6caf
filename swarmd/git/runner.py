"""Runs ``git -C <path> ...`` in a fixed environment, synchronously.

Callers run it in a thread. The environment is built from scratch, never inherited whole:

- hooks off (``core.hooksPath=/dev/null``) unless the runner is told otherwise;
- no prompts (``GIT_TERMINAL_PROMPT=0``, stdin closed, a session of its own);
- the daemon's own commands read only the repository's config: no system config, no global
  config, and ``HOME``/``XDG_CONFIG_HOME`` pointed at ``/dev/null`` so the user's global
  ignore and attributes files are not read either. ``user_config=True`` (push and fetch)
  reads the user's config instead, because their credential helper and ssh settings live there;
- read-only probes take no optional locks (``GIT_OPTIONAL_LOCKS=0``), so a ``status`` never
  rewrites an index under someone else;
- a fixed author and committer (the ``Identity``);
- no automatic gc or maintenance in the background (``Repository.gc`` runs it under the lock),
  no signing, no fsmonitor daemon, and messages in the C locale.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from swarmd.git.errors import GitCommandError

DEFAULT_TIMEOUT_SECONDS = 300.0

# GIT_DIR, GIT_WORK_TREE or GIT_INDEX_FILE inherited from a hook's environment would point
# every command at another repository or index; only these few are kept from the caller.
_KEPT_GIT_VARIABLES = frozenset({"GIT_SSH", "GIT_SSH_COMMAND", "GIT_ASKPASS"})

_FIXED_CONFIG = (
    "gc.auto=0",
    "maintenance.auto=false",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "core.fsmonitor=false",
    "advice.detachedHead=false",
)


@dataclass(frozen=True, slots=True)
class Identity:
    """The name and address on every commit the daemon makes."""

    name: str = "swarmd"
    email: str = "swarmd@localhost"


@dataclass(frozen=True, slots=True)
class GitResult:
    """What one git command printed, and how it exited."""

    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        """stdout as text; bytes that are not UTF-8 (odd file names) survive as surrogates."""
        return self.stdout.decode("utf-8", "surrogateescape")

    def line(self) -> str:
        """The first line of stdout, for commands that print one value."""
        return self.text.split("\n", 1)[0].strip()

    def fields(self) -> list[str]:
        """stdout split on NUL (the ``-z`` formats), without the empty tail."""
        parts = self.text.split("\0")
        while parts and not parts[-1]:
            parts.pop()
        return parts


class GitRunner:
    """Runs git with a fixed environment; one instance serves every repository."""

    def __init__(
        self,
        *,
        identity: Identity | None = None,
        inherited_env: Mapping[str, str] | None = None,
        run_hooks: bool = False,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        executable: str = "git",
    ) -> None:
        """``inherited_env`` is what the caller lets through: ``PATH``, and for push and fetch
        ``HOME`` and ``SSH_AUTH_SOCK``. Every ``GIT_*`` variable in it but ssh's and askpass's
        is dropped. ``timeout`` bounds each command unless ``run`` is given another.
        """
        self.identity = identity or Identity()
        self.timeout = timeout
        self.executable = executable
        settings = [*_FIXED_CONFIG, *([] if run_hooks else ["core.hooksPath=/dev/null"])]
        self._config_args = tuple(arg for setting in settings for arg in ("-c", setting))
        kept = {
            key: value
            for key, value in (inherited_env or {"PATH": os.defpath}).items()
            if not key.startswith("GIT_") or key in _KEPT_GIT_VARIABLES
        }
        kept.setdefault("PATH", os.defpath)
        kept.update(
            LC_ALL="C",
            GIT_TERMINAL_PROMPT="0",
            GIT_AUTHOR_NAME=self.identity.name,
            GIT_AUTHOR_EMAIL=self.identity.email,
            GIT_COMMITTER_NAME=self.identity.name,
            GIT_COMMITTER_EMAIL=self.identity.email,
        )
        self._user_env = kept
        self._daemon_env = {
            **kept,
            "HOME": "/dev/null",
            "XDG_CONFIG_HOME": "/dev/null",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
        }

    def run(
        self,
        cwd: Path,
        *args: str,
        stdin: bytes | None = None,
        read_only: bool = False,
        user_config: bool = False,
        accept: Collection[int] = (0,),
        timeout: float | None = None,
    ) -> GitResult:
        """Run ``git -C cwd args...``; ``GitCommandError`` unless its status is in ``accept``."""
        env = dict(self._user_env if user_config else self._daemon_env)
        if read_only:
            env["GIT_OPTIONAL_LOCKS"] = "0"
        argv = [self.executable, "-C", os.fspath(cwd), *self._config_args, *args]
        command = _command_name(args)
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                # Its own session: no controlling terminal to prompt on, and a timeout can
                # stop the helpers git started (ssh, credential helpers) with the group.
                start_new_session=True,
            )
        except OSError as exc:
            raise GitCommandError(command, 127, f"cannot run {self.executable}: {exc}") from exc
        limit = self.timeout if timeout is None else timeout
        try:
            stdout, stderr = process.communicate(stdin, timeout=limit)
        except subprocess.TimeoutExpired as exc:
            _kill_group(process)
            raise GitCommandError(command, -9, f"timed out after {limit:g} s") from exc
        except BaseException:
            _kill_group(process)
            raise
        if process.returncode not in accept:
            text = stderr.decode("utf-8", "replace") or stdout.decode("utf-8", "replace")
            raise GitCommandError(command, process.returncode, text)
        return GitResult(process.returncode, stdout, stderr)


def _command_name(args: tuple[str, ...]) -> str:
    """The subcommand as messages name it: ``worktree add``, ``merge-tree``."""
    words = [arg for arg in args[:2] if not arg.startswith("-")]
    if len(words) == 2 and args[0] not in {"worktree", "bundle", "remote", "stash"}:
        words = words[:1]
    return " ".join(words) or "command"


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
