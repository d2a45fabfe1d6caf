"""How a command ends: one line on stderr, ``swarmd: ...``, and its exit code.

A ``SwarmdError`` carries both; a refused command-line value (``swarmd.cli.inputs``) is
exit 2; an unusable home (``swarmd.cli.home_check``) is exit 3; a usage mistake typer
finds itself (an unknown option, a missing argument) is one line and exit 2 as well.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import cache
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from swarmd.cli.quoting import printable
from swarmd.errors import InputError, SwarmdError

if TYPE_CHECKING:
    from rich.console import Console

    from swarmd.config import Settings

T = TypeVar("T")

MESSAGE_CHARS = 4000


@cache
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int) -> NoReturn:
    """Say ``message`` and end the command with ``code`` (typer lets ``SystemExit`` through,
    so this module, and the commands run without typer, need not import it)."""
    say(message)
    raise SystemExit(code)


def say(message: str) -> None:
    """One line on stderr, as every message of swarmd: ``swarmd: ...``."""
    err_console().print(
        f"swarmd: {printable(message, MESSAGE_CHARS)}", highlight=False, markup=False
    )


def checked(check: Callable[[], T]) -> T:
    """A command-line value through its check (``swarmd.cli.inputs``); exit 2 if refused."""
    try:
        return check()
    except InputError as exc:
        fail(str(exc), exc.exit_code)


def usable_home(settings: Settings, *, writing: bool) -> None:
    """Exit 3, naming the home and what is wrong with it, before anything is written."""
    from swarmd.cli.home_check import require_usable_home

    try:
        require_usable_home(settings.layout, writing=writing)
    except SwarmdError as exc:
        fail(f"{exc}; nothing was written", exc.exit_code)


def settings_or_exit() -> Settings:
    from swarmd.config import load_settings

    try:
        return load_settings()
    except SwarmdError as exc:
        fail(str(exc), exc.exit_code)


def call(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run one async operation; a SwarmdError becomes its sentence and exit code."""
    import asyncio

    try:
        return asyncio.run(coro_fn())
    except SwarmdError as exc:
        fail(str(exc), exc.exit_code)


def usage_problem(exc: Exception) -> int:
    """Print typer's usage error as one line and return its exit code; re-raise anything
    else. (Matched by shape: typer and click name the class differently across versions.)"""
    exit_code = getattr(exc, "exit_code", None)
    format_message = getattr(exc, "format_message", None)
    if not isinstance(exit_code, int) or not callable(format_message):
        raise exc
    if type(exc).__name__ == "NoArgsIsHelpError":
        return exit_code  # the help was printed already
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", None) or "swarmd"
    say(f"{format_message()} (see {command} --help)")
    return exit_code
