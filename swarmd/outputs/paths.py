"""Paths inside a workspace: the naming rules, and reads and writes that never leave it.

Every write walks the path one directory at a time through directory file descriptors opened
with ``O_NOFOLLOW``, so a symlink anywhere on the way (planted before or raced in during the
write) is refused rather than followed. The file itself is written under a temporary name and
renamed into place: a rename replaces a symlink or hard link at the destination instead of
writing through it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from swarmd.errors import OutputError, UnsafePathError
from swarmd.text import plain_or_quoted, quote, unsafe_in_line

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
MAX_DEPTH = 64
SHOWN_PATH_CHARS = 200
"""Characters of a path a message shows before it shortens it."""
INTERNAL_DIR = ".swarmd"
"""swarmd's own files in a workspace (the input record); never part of the outputs."""

JUNK_DIRS = frozenset(
    {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "node_modules", ".git"}
)
JUNK_FILES = frozenset({".DS_Store"})
JUNK_SUFFIXES = (".log", ".pyc")
TEMP_PREFIX = ".swarmd-tmp-"
"""A file being written by ``open_for_write``; one left by a crash is junk."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in after the listing must not block the open.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def quote_path(path: str) -> str:
    """A path as messages show it: quoted, hidden characters escaped (see ``swarmd.text``)."""
    return quote(path, SHOWN_PATH_CHARS)


def format_size(count: int) -> str:
    """A byte count for people: 512 bytes, 1.5 KiB, 10 MiB."""
    if count < 1024:
        return f"{count} bytes"
    value = count / 1024
    units = iter(("MiB", "GiB", "TiB"))
    unit = "KiB"
    while value >= 1024 and unit != "TiB":
        value, unit = value / 1024, next(units)
    return f"{value:.1f} {unit}".replace(".0 ", " ")


def path_problem(relpath: str) -> str | None:
    """Why ``relpath`` may not name a file in a workspace, or ``None`` when it may."""
    if not relpath:
        return "is empty"
    problem = _character_problem(relpath)
    if problem:
        return problem
    if relpath.startswith("/"):
        return "is absolute"
    raw_parts = relpath.split("/")
    if ".." in raw_parts:
        return 'climbs out of the workspace with ".."'
    parts = [part for part in raw_parts if part not in ("", ".")]
    if not parts or relpath.endswith("/"):
        return "names a directory, not a file"
    if len(relpath.encode("utf-8")) > MAX_PATH_BYTES:
        return f"is longer than {MAX_PATH_BYTES} bytes"
    if any(len(part.encode("utf-8")) > MAX_NAME_BYTES for part in parts):
        return f"has a name longer than {MAX_NAME_BYTES} bytes"
    if len(parts) > MAX_DEPTH:
        return f"is nested deeper than {MAX_DEPTH} directories"
    return None


def _character_problem(relpath: str) -> str | None:
    if "\0" in relpath:
        return "holds a NUL byte"
    if "\n" in relpath or "\r" in relpath:
        return "holds a newline"
    if any(ord(char) < 32 or 127 <= ord(char) < 160 for char in relpath):  # C0, DEL, C1
        return "holds a control character"
    if "\\" in relpath:
        return "holds a backslash"
    try:
        relpath.encode("utf-8")
    except UnicodeEncodeError:  # a name on disk that is not UTF-8 decodes to surrogates
        return "is not valid UTF-8"
    hidden = unsafe_in_line(relpath)
    if hidden is not None:  # a bidi override can make "x\u202egnp.exe" show as "xexe.png"
        return f"holds U+{ord(hidden):04X}, an invisible formatting character"
    return None


def check_relpath(relpath: str) -> str:
    """``relpath`` normalised to ``a/b/c``; ``UnsafePathError`` if it may not name a file."""
    problem = path_problem(relpath)
    if problem:
        raise UnsafePathError(f"path {quote_path(relpath)} {problem}")
    return "/".join(part for part in relpath.split("/") if part not in ("", "."))


def is_junk(name: str, *, is_dir: bool, top: bool, include_git: bool = False) -> bool:
    """Whether the walk leaves this entry out of the outputs without comment."""
    if is_dir:
        if top and name == INTERNAL_DIR:
            return True
        return name in JUNK_DIRS and not (include_git and name == ".git")
    return name in JUNK_FILES or name.endswith(JUNK_SUFFIXES) or name.startswith(TEMP_PREFIX)


@contextlib.contextmanager
def open_for_write(workspace: Path, relpath: str, *, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A new file that replaces ``workspace/relpath`` when the block exits without error.

    Missing directories are created; ``UnsafePathError`` if the path breaks the rules or meets
    a symlink or a non-directory on the way; ``OutputError`` if the disk refuses the write.
    """
    rel = check_relpath(relpath)
    *parents, name = rel.split("/")
    with contextlib.ExitStack() as fds:
        dir_fd = fds.enter_context(_opened(_open_root(workspace)))
        for depth, part in enumerate(parents, start=1):
            dir_fd = fds.enter_context(_opened(_enter_dir(dir_fd, part, rel, depth)))
        _refuse_non_file(dir_fd, name, rel)
        temp = f"{TEMP_PREFIX}{secrets.token_hex(6)}"
        try:
            fd = os.open(temp, _CREATE_FLAGS, mode, dir_fd=dir_fd)
        except OSError as exc:
            raise _write_error(rel, exc) from exc
        try:
            with os.fdopen(fd, "wb") as file:
                yield file
                if mode & 0o111:
                    os.fchmod(file.fileno(), mode)  # the umask may have dropped the x bits
            os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            if isinstance(exc, OSError):
                raise _write_error(rel, exc) from exc
            raise


def safe_write(workspace: Path, relpath: str, data: bytes) -> Path:
    """Write ``data`` to ``workspace/relpath`` without ever leaving the workspace."""
    with open_for_write(workspace, relpath) as file:
        file.write(data)
    return workspace / check_relpath(relpath)


def walk_files(
    workspace: Path, *, include_git: bool = False, skipped: list[str] | None = None
) -> Iterator[tuple[str, BinaryIO]]:
    """Each regular file under ``workspace`` as ``(relpath, open file)``, in path order.

    The order is by path components (``a/b`` before ``a-c``), the same every time. Junk is
    left out silently; symlinks, special files and names the path rules refuse are left out
    and described in ``skipped``. Each file is closed when the walk resumes: read it before.
    """
    root_fd = _open_root(workspace)
    stack: list[tuple[int, str, Iterator[str]]] = [(root_fd, "", iter(_list_dir(root_fd, "")))]
    try:
        while stack:
            dir_fd, prefix, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(stack.pop()[0])
                continue
            path = prefix + name
            kind = _classify(dir_fd, name, path, top=not prefix, include_git=include_git)
            if kind == "dir" and len(stack) >= MAX_DEPTH:
                _note(skipped, path, f"is nested deeper than {MAX_DEPTH} directories")
            elif kind == "dir":
                child = _enter_dir(dir_fd, name, path, len(stack), create=False)
                stack.append((child, path + "/", iter(_list_dir(child, path))))
            elif kind == "file":
                file = _open_regular(dir_fd, name, path)
                if file is None:
                    continue  # gone or swapped for something else since the listing
                with file:
                    yield path, file
            elif kind:
                _note(skipped, path, kind)
    finally:
        for dir_fd, _, _ in stack:
            os.close(dir_fd)


def _classify(dir_fd: int, name: str, path: str, *, top: bool, include_git: bool) -> str:
    """What the walk does with an entry: "dir", "file", "" to leave it out, or why it skips it."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return ""  # removed since the listing: nothing to package
    except OSError as exc:
        raise _read_error(path, exc) from exc
    if stat.S_ISDIR(info.st_mode):
        return "" if is_junk(name, is_dir=True, top=top, include_git=include_git) else "dir"
    if stat.S_ISLNK(info.st_mode):
        return "is a symlink"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if is_junk(name, is_dir=False, top=top):
        return ""
    return path_problem(path) or "file"


def _open_root(workspace: Path) -> int:
    try:
        return os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        shown = plain_or_quoted(str(workspace), 1024)
        raise OutputError(f"cannot open the workspace {shown}: {exc.strerror}") from exc


@contextlib.contextmanager
def _opened(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _enter_dir(dir_fd: int, name: str, rel: str, depth: int, *, create: bool = True) -> int:
    """Open the directory ``name`` under ``dir_fd`` (creating it if asked), never a symlink."""
    if create:
        try:
            os.mkdir(name, 0o755, dir_fd=dir_fd)
        except FileExistsError:
            pass  # an existing directory is entered; anything else is refused by the open
        except OSError as exc:
            raise _write_error(rel, exc) from exc
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            is_link = _is_symlink(dir_fd, name)
            what = "a symlink" if is_link else "not a directory"
            shown = "/".join(rel.split("/")[:depth])
            raise UnsafePathError(
                f"path {quote_path(rel)} meets {quote_path(shown)}, which is {what}"
            ) from exc
        raise _write_error(rel, exc) from exc


def _refuse_non_file(dir_fd: int, name: str, rel: str) -> None:
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePathError(f"path {quote_path(rel)} is a symlink")
    if stat.S_ISDIR(info.st_mode):
        raise UnsafePathError(f"path {quote_path(rel)} is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePathError(f"path {quote_path(rel)} is not a regular file")


def _is_symlink(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _list_dir(dir_fd: int, path: str) -> list[str]:
    try:
        with os.scandir(dir_fd) as entries:
            return sorted(entry.name for entry in entries)
    except OSError as exc:
        raise _read_error(path or ".", exc) from exc


def _open_regular(dir_fd: int, name: str, path: str) -> BinaryIO | None:
    """The file opened for reading, or ``None`` if it is gone or no longer a regular file."""
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None  # swapped for a symlink since the listing
        raise _read_error(path, exc) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _note(skipped: list[str] | None, path: str, problem: str) -> None:
    if skipped is not None:
        skipped.append(f"{quote_path(path)} {problem}")


def _write_error(rel: str, exc: OSError) -> OutputError:
    return OutputError(f"cannot write {quote_path(rel)} in the workspace: {exc.strerror or exc}")


def _read_error(rel: str, exc: OSError) -> OutputError:
    return OutputError(f"cannot read {quote_path(rel)} in the workspace: {exc.strerror or exc}")
