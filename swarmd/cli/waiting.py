"""The commands a user waits on, ``submit`` and ``run-ticket``, and their quick start.

Their bodies live here, free of typer: ``app.py``'s commands call them, and so does
``swarmd.cli.main`` directly when the command line is one of their plain forms (the
positional argument and bare flags only, as scripts type them), which spares the command
typer's import and its parsing (~0.1 s of a ``submit`` that takes ~0.3 s). Any other form
(an option with a value, ``--help``, ``--``, an unknown flag, a second argument) goes
through typer, so usage mistakes, help and every option behave as before.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from swarmd.cli.exits import call, checked, fail, settings_or_exit, usable_home

if TYPE_CHECKING:
    from swarmd.config import Settings

# Each command's bare flags, as typer names them; a plain form has one argument besides.
PLAIN_FLAGS: dict[str, frozenset[str]] = {
    "submit": frozenset({"--wait", "--json"}),
    "run-ticket": frozenset({"--wait"}),
}


def plain_form(argv: Sequence[str]) -> Callable[[], None] | None:
    """The command ``argv`` (without the program's name) asks for, if it is a plain form of
    ``submit`` or ``run-ticket``; ``None`` sends it through typer."""
    if not argv or argv[0] not in PLAIN_FLAGS or "_SWARMD_COMPLETE" in os.environ:
        return None
    allowed = PLAIN_FLAGS[argv[0]]
    flags = [arg for arg in argv[1:] if arg.startswith("-")]
    values = [arg for arg in argv[1:] if not arg.startswith("-")]
    if len(values) != 1 or len(set(flags)) != len(flags) or not set(flags) <= allowed:
        return None
    (value,) = values
    wait = "--wait" in flags
    if argv[0] == "submit":
        json_output = "--json" in flags
        return lambda: submit(Path(value), priority=None, key=None, wait=wait, json=json_output)
    return lambda: run_ticket(value, wait=wait, timeout=None, priority=None)


def run_plain(command: Callable[[], None]) -> None:
    """Run a plain form as typer would: Ctrl-C is exit 130, a closed stdout exit 1."""
    try:
        command()
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - until the exit
        sys.exit(1)


def setup_cli_logging(settings: Settings, *, console_output: bool = False) -> None:
    if not console_output:
        import_structlog_without_rich()
    from swarmd.logs import configure_logging

    configure_logging(
        level=settings.log_level,
        log_path=settings.layout.log,
        secrets=settings.secrets,
        console=console_output,
        max_bytes=settings.log_max_bytes,
        backups=settings.log_backups,
    )


def import_structlog_without_rich() -> None:
    """Import structlog with rich out of its reach, unless either is loaded already.

    structlog imports rich (its traceback and pretty-printing modules, ~25 ms) on its own
    import, for its console renderer alone. A command whose log goes only to the JSON-lines
    file never renders to a console: it imports structlog as if rich were not installed, and
    rich itself stays importable (for the command's own messages).
    """
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # ``import rich`` fails at once
    try:
        import structlog  # noqa: F401
    finally:
        if sys.modules.get("rich", ...) is None:
            del sys.modules["rich"]


def submit(file: Path, *, priority: int | None, key: str | None, wait: bool, json: bool) -> None:
    """``swarmd submit``: queue a ticket, print its id; with ``wait``, follow it to its end."""
    from swarmd.cli import commands, inputs

    priority = checked(lambda: inputs.priority(priority))
    settings = settings_or_exit()
    usable_home(settings, writing=True)
    setup_cli_logging(settings)
    result = call(lambda: commands.submit_file(settings, file, priority=priority, key=key))
    if json:
        print(f'{{"ticket": {result.ticket_id}, "created": {str(result.created).lower()}}}')
    else:
        print(result.ticket_id)
    if wait:
        sys.stdout.flush()
        raise SystemExit(wait_and_summarise(settings, result.ticket_id))


def wait_and_summarise(settings: Settings, ticket_id: int) -> int:
    """``submit --wait``: follow the ticket, then say how it ended on stderr (stdout holds
    the id alone, for scripts); the exit code of its end."""
    from swarmd.cli import running
    from swarmd.cli.progress import exit_code_for

    if note := running.no_daemon_note(settings, ticket_id):
        print(note, file=sys.stderr, flush=True)
    try:
        state = call(lambda: running.wait_for_ticket(settings, ticket_id, timeout=None))
    except KeyboardInterrupt:
        fail(stopped_waiting(settings, ticket_id), 130)
    assert state is not None  # no timeout: only the ticket's end ends the wait
    lines = call(lambda: running.describe_outcome(settings, ticket_id))
    sys.stderr.write("".join(f"{line}\n" for line in lines))  # one write, not two a line
    return exit_code_for(state)


def stopped_waiting(settings: Settings, ticket_id: int) -> str:
    from swarmd.cli import running

    return f"stopped waiting for ticket {ticket_id}; {running.left_behind(settings, ticket_id)}"


def run_ticket(ticket: str, *, wait: bool, timeout: float | None, priority: int | None) -> None:
    """``swarmd run-ticket``: with a daemon, hand the ticket over; without one, run it here."""
    from swarmd.cli import inputs, running

    timeout = checked(lambda: inputs.seconds("--timeout", timeout))
    priority = checked(lambda: inputs.priority(priority))
    typed_id = checked(lambda: inputs.ticket_id(ticket)) if inputs.looks_like_id(ticket) else None
    settings = settings_or_exit()
    usable_home(settings, writing=True)
    setup_cli_logging(settings)
    if note := running.offline_note(settings):
        print(note, file=sys.stderr, flush=True)
    known: list[int] = []  # the ticket's id, once it is known
    try:
        outcome = call(
            lambda: running.run_ticket(
                settings,
                ticket,
                typed_id,
                priority=priority,
                wait=wait,
                timeout=timeout,
                on_ticket=known.append,
            )
        )
    except KeyboardInterrupt:
        if not known:
            raise
        fail(stopped_waiting(settings, known[0]), 130)
    for line in outcome.lines:
        print(line)
    raise SystemExit(outcome.exit_code)
