"""Is the home usable? Checked before a command writes anything under it.

A home that is a file, lies under a file, sits on a read-only file system or belongs to
someone else would otherwise fail deep inside logging or SQLite with a traceback (and, for
``swarmd run`` under systemd, in a restart loop). Here it is one sentence naming the path
and the problem, as an ``EnvironmentProblem`` (exit 3), before anything is created.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from swarmd.cli.quoting import printable
from swarmd.errors import EnvironmentProblem
from swarmd.home import HomeLayout


def require_usable_home(layout: HomeLayout, *, writing: bool) -> None:
    """Raise ``EnvironmentProblem`` unless this user can use the home (and write in it, if
    ``writing``). A home that does not exist yet is fine when it can be created."""
    home = layout.root
    where = f"home {printable(str(home))} (SWARMD_HOME)"
    try:
        mode = home.stat().st_mode
    except FileNotFoundError:
        if writing:
            _require_creatable(home, where)
        return
    except NotADirectoryError:
        raise EnvironmentProblem(f"{where} cannot be used: {_file_above(home)} is a file") from None
    except OSError as exc:
        raise EnvironmentProblem(f"{where} cannot be used: {exc.strerror}") from None
    if not stat.S_ISDIR(mode):
        raise EnvironmentProblem(f"{where} is a file, not a directory")
    needed = os.R_OK | os.X_OK | (os.W_OK if writing else 0)
    if not os.access(home, needed):
        raise EnvironmentProblem(f"{where} cannot be used: {_why_not_accessible(home, needed)}")
    if writing:
        _require_usable_entries(layout, where)


def _require_creatable(home: Path, where: str) -> None:
    parent = next((p for p in home.parents if os.path.lexists(p)), Path("/"))
    if not parent.is_dir():
        raise EnvironmentProblem(f"{where} cannot be created: {printable(str(parent))} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        reason = _why_not_accessible(parent, os.W_OK | os.X_OK)
        raise EnvironmentProblem(f"{where} cannot be created: {reason}")
    # Permission bits do not tell everything (root, /proc, a read-only mount): try it.
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentProblem(f"{where} cannot be created: {exc.strerror}") from None


def _require_usable_entries(layout: HomeLayout, where: str) -> None:
    """The entries swarmd writes first: the log directory, the database and its lock."""
    expected = (
        (layout.log.parent, True),
        (layout.database, False),
        (layout.lock, False),
    )
    for path, is_dir in expected:
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            continue
        shown = printable(str(path))
        if is_dir and not stat.S_ISDIR(mode):
            raise EnvironmentProblem(f"{where} cannot be used: {shown} is a file, not a directory")
        if not is_dir and stat.S_ISDIR(mode):
            raise EnvironmentProblem(f"{where} cannot be used: {shown} is a directory, not a file")
        needed = os.R_OK | os.W_OK | (os.X_OK if is_dir else 0)
        if not os.access(path, needed):
            raise EnvironmentProblem(f"{where} cannot be used: {_why_not_accessible(path, needed)}")


def _why_not_accessible(path: Path, needed: int) -> str:
    shown = printable(str(path))
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY and needed & os.W_OK:
            return f"{shown} is on a read-only file system"
        info = path.stat()
    except OSError as exc:
        return f"{shown}: {exc.strerror}"
    denied = [
        word
        for flag, word in ((os.R_OK, "read"), (os.W_OK, "write"), (os.X_OK, "enter"))
        if needed & flag and not os.access(path, flag)
    ]
    wanted = " or ".join([", ".join(denied[:-1]), denied[-1]] if len(denied) > 1 else denied)
    owner = f"uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):o}"
    return (
        f"this user (uid {os.geteuid()}) may not {wanted or 'use'} {shown} ({owner}); "
        "run swarmd as its owner or fix its permissions"
    )


def _file_above(path: Path) -> str:
    """The first ancestor of ``path`` that exists and is not a directory."""
    for parent in reversed(path.parents):
        if os.path.lexists(parent) and not parent.is_dir():
            return printable(str(parent))
    return printable(str(path))
