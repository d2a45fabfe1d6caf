"""RepoLock: one lock per repository across threads and real processes."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from swarmd.git import RepoLock, RepoLockTimeoutError
from swarmd.git.lock import LOCK_FILE_NAME

ROOT = Path(__file__).resolve().parents[2]

COUNTING = """
import sys
from pathlib import Path
from swarmd.git.lock import RepoLock

lock = RepoLock(Path(sys.argv[1]), timeout=30)
counter = Path(sys.argv[2])
for _ in range(int(sys.argv[3])):
    with lock:
        counter.write_text(str(int(counter.read_text()) + 1))
"""

HOLDING = """
import sys
from pathlib import Path
from swarmd.git.lock import RepoLock

lock = RepoLock(Path(sys.argv[1]))
with lock:
    print("held", flush=True)
    sys.stdin.read()
"""


def _python(script: str, *args: object, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-c", script, *map(str, args)], cwd=ROOT, text=True, **popen
    )


def _increment(lock: RepoLock, counter: Path) -> None:
    # A read-modify-write with no other protection: any overlap loses an increment.
    with lock:
        counter.write_text(str(int(counter.read_text()) + 1))


def test_threads_never_overlap(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    lock_path = tmp_path / LOCK_FILE_NAME

    def work() -> None:
        lock = RepoLock(lock_path)  # one object per thread: they share the file, not the object
        for _ in range(50):
            _increment(lock, counter)

    threads = [threading.Thread(target=work) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert counter.read_text() == "500"


def test_processes_and_threads_never_overlap(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    lock_path = tmp_path / LOCK_FILE_NAME
    children = [_python(COUNTING, lock_path, counter, 100) for _ in range(4)]
    lock = RepoLock(lock_path)
    for _ in range(100):
        _increment(lock, counter)

    assert [child.wait(timeout=30) for child in children] == [0, 0, 0, 0]
    assert counter.read_text() == "500"


def test_waiting_past_the_timeout_names_the_holder_and_the_lock_works_once_released(
    tmp_path: Path,
) -> None:
    lock_path = tmp_path / LOCK_FILE_NAME
    lock = RepoLock(lock_path)
    with _python(HOLDING, lock_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as holder:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(RepoLockTimeoutError) as caught:
            lock.acquire(timeout=0.1)
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
    with lock.held(timeout=5):
        pass

    assert str(caught.value) == (
        f"the repository lock {lock_path} was not acquired within 0.1 s"
        f" (held by process {holder.pid})"
    )


def test_a_thread_waits_only_as_long_as_its_timeout(tmp_path: Path) -> None:
    lock_path = tmp_path / LOCK_FILE_NAME
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with RepoLock(lock_path):
            held.set()
            done.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        with pytest.raises(RepoLockTimeoutError, match=r"within 0\.05 s"):
            RepoLock(lock_path).acquire(timeout=0.05)
    finally:
        done.set()
        holder.join()


def test_the_lock_is_reentrant_within_a_thread(tmp_path: Path) -> None:
    lock = RepoLock(tmp_path / LOCK_FILE_NAME)
    other = RepoLock(tmp_path / LOCK_FILE_NAME)

    with lock, other, lock:
        pass
    with lock.held(timeout=0):
        pass


def test_releasing_a_lock_not_held_is_a_bug(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="does not hold"):
        RepoLock(tmp_path / LOCK_FILE_NAME).release()
