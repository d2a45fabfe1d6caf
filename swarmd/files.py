"""Reading a file a user named, without ever waiting on it or reading it whole by surprise.

A FIFO, a device or a socket given where a regular file belongs would make ``open`` wait for
a writer forever, or ``read`` run until memory ends (``/dev/zero``). These helpers open
without blocking, judge the file actually opened, and read at most a bound.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class NotARegularFileError(OSError):
    """The path names something other than a regular file (its ``strerror`` says what)."""


class FileTooLargeError(OSError):
    """The file is larger than the bound it was read with."""


def kind_of(mode: int) -> str:
    """What a file of ``mode`` is, in words: "a FIFO", "a directory", ..."""
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "not a regular file"


def require_regular(mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise NotARegularFileError(0, f"it is {kind_of(mode)}, not a regular file")


def read_regular_file(path: Path, *, limit: int) -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` of them.

    ``FileNotFoundError`` and the other ``OSError``s of opening; ``NotARegularFileError``
    for anything but a regular file; ``FileTooLargeError`` past ``limit``.
    """
    # O_NONBLOCK: a FIFO opens at once, to be refused, rather than waiting for a writer.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        require_regular(os.fstat(fd).st_mode)
        with open(fd, "rb", closefd=False) as file:
            raw = file.read(limit + 1)
    finally:
        os.close(fd)
    if len(raw) > limit:
        raise FileTooLargeError(0, f"it is larger than {limit} bytes")
    return raw
