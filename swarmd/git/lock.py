"""One lock per repository, shared by every thread and process that changes it.

Git takes its own lock files (``index.lock``, ``config.lock``, ``packed-refs.lock``) and fails
at once, rather than waiting, when another command holds one: parallel ``worktree add``,
branch deletions and ref updates on one repository break without a lock of our own around
them. ``RepoLock`` is an ``fcntl.flock`` on ``<git-common-dir>/swarmd.lock``, held around
every change to shared refs or worktree metadata.

Inside one process, waiters queue on a ``threading.RLock`` first (one per lock file), so
threads wait without polling and a thread may re-enter a lock it holds. Only the thread that
holds it talks to the file; as ``flock`` cannot wait with a timeout, that thread polls it with
a short backoff while another process holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

from swarmd.errors import GitError
from swarmd.git.errors import RepoLockTimeoutError

LOCK_FILE_NAME = "swarmd.lock"
DEFAULT_LOCK_TIMEOUT_SECONDS = 60.0
_FIRST_POLL_SECONDS = 0.001
_LONGEST_POLL_SECONDS = 0.01


class _Holder:
    """This process's state for one lock file; only the thread owning ``thread_lock`` uses it."""

    def __init__(self) -> None:
        self.thread_lock = threading.RLock()
        self.depth = 0
        self.fd = -1


class _Registry:
    """This process's holders, one per lock file."""

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.holders: dict[str, _Holder] = {}

    def holder_for(self, path: Path) -> _Holder:
        with self.guard:
            return self.holders.setdefault(os.fspath(path), _Holder())

    def reset_in_child(self) -> None:
        # A thread of the parent may have held a lock at fork time: that thread does not
        # exist here, so its RLock would never be released. In the child nothing is held.
        # Inherited descriptors are closed without LOCK_UN, which would release the
        # parent's lock.
        self.guard = threading.Lock()
        for holder in self.holders.values():
            if holder.fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(holder.fd)
            holder.thread_lock = threading.RLock()
            holder.depth = 0
            holder.fd = -1


_registry = _Registry()
os.register_at_fork(after_in_child=_registry.reset_in_child)


class RepoLock:
    """An exclusive lock on one repository, re-entrant within a thread.

    ``with lock:`` waits up to ``timeout`` seconds, then raises ``RepoLockTimeoutError``.
    """

    def __init__(
        self,
        path: Path,
        *,
        timeout: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = Path(os.path.realpath(path))
        self.timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self._holder = _registry.holder_for(self.path)

    @classmethod
    def for_common_dir(
        cls, common_dir: Path, *, timeout: float = DEFAULT_LOCK_TIMEOUT_SECONDS
    ) -> RepoLock:
        """The lock of the repository whose git common dir is ``common_dir``."""
        return cls(common_dir / LOCK_FILE_NAME, timeout=timeout)

    def acquire(self, timeout: float | None = None) -> None:
        """Take the lock, waiting up to ``timeout`` (default: the lock's own) seconds."""
        limit = self.timeout if timeout is None else timeout
        deadline = self._clock() + limit
        holder = self._holder
        if not holder.thread_lock.acquire(timeout=max(limit, 0.0)):
            raise self._timed_out(limit)
        if holder.depth == 0:
            try:
                holder.fd = self._lock_file(deadline, limit)
            except BaseException:
                holder.thread_lock.release()
                raise
        holder.depth += 1

    def release(self) -> None:
        """Give the lock back; the file lock goes when the outermost holder releases."""
        holder = self._holder
        if holder.depth <= 0:
            raise RuntimeError(f"release of {self.path}, which this process does not hold")
        holder.depth -= 1
        if holder.depth == 0:
            fd, holder.fd = holder.fd, -1
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        holder.thread_lock.release()

    @contextlib.contextmanager
    def held(self, timeout: float | None = None) -> Iterator[None]:
        """``with lock.held(timeout=5):`` for a timeout other than the lock's own."""
        self.acquire(timeout)
        try:
            yield
        finally:
            self.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def _lock_file(self, deadline: float, limit: float) -> int:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise GitError(f"cannot open the repository lock {self.path}: {exc.strerror}") from exc
        delay = _FIRST_POLL_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    holder_pid = _read_holder_pid(fd)
                    os.close(fd)
                    raise self._timed_out(limit, holder_pid) from None
                self._sleep(min(delay, remaining))
                delay = min(delay * 2, _LONGEST_POLL_SECONDS)
                continue
            except BaseException:
                os.close(fd)
                raise
            _write_holder_pid(fd)
            return fd

    def _timed_out(self, limit: float, holder_pid: int | None = None) -> RepoLockTimeoutError:
        by = f" (held by process {holder_pid})" if holder_pid else ""
        return RepoLockTimeoutError(
            f"the repository lock {self.path} was not acquired within {limit:g} s{by}"
        )


def _write_holder_pid(fd: int) -> None:
    # Only for the timeout message of whoever waits next; the flock is the lock.
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _read_holder_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
