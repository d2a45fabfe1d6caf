"""The ``swarmd`` command: parse, call, print. No business logic lives here.

Exit codes: 0 done; 1 the ticket failed or was cancelled; 2 bad input, nothing written;
3 environment problem (database unusable, another daemon running); 78 invalid settings.

Each command imports what it needs inside its own body, and reaches the rest of swarmd only
through ``swarmd.cli.commands`` (and the CLI's own views): ``swarmd --version`` and
``swarmd --help`` load no settings, logging, asyncio or rich.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from swarmd import __version__
from swarmd.errors import InputError, SwarmdError

if TYPE_CHECKING:
    from rich.console import Console

    from swarmd.config import Settings

T = TypeVar("T")

app = typer.Typer(
    name="swarmd",
    help="Run swarms of LLM agents from a durable queue.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@cache
def console() -> Console:
    from rich.console import Console

    return Console()


@cache
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def fail(message: str, code: int) -> NoReturn:
    err_console().print(f"swarmd: {message}", highlight=False, markup=False)
    raise typer.Exit(code)


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


def setup_cli_logging(settings: Settings, *, console_output: bool = False) -> None:
    from swarmd.logs import configure_logging

    configure_logging(
        level=settings.log_level,
        log_path=settings.layout.log,
        secrets=settings.secrets,
        console=console_output,
        max_bytes=settings.log_max_bytes,
        backups=settings.log_backups,
    )


def version_callback(value: bool) -> None:
    if value:
        print(f"swarmd {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """swarmd: tickets go in, agents work on them in parallel, archives come out."""


@app.command()
def run() -> None:
    """Run the daemon in the foreground (systemd's ExecStart)."""
    from swarmd.cli import commands

    settings = settings_or_exit()
    setup_cli_logging(settings, console_output=True)
    call(lambda: commands.run_daemon(settings))


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(help="A ticket file, TOML or JSON.")],
    priority: Annotated[int | None, typer.Option(help="Override the ticket's priority.")] = None,
    key: Annotated[
        str | None, typer.Option(help="Idempotency key: resubmitting returns the same ticket.")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the ticket to finish.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Queue a ticket; prints the new ticket id."""
    from swarmd.cli import commands

    settings = settings_or_exit()
    setup_cli_logging(settings)
    result = call(lambda: commands.submit_file(settings, file, priority=priority, key=key))
    if json_output:
        print(f'{{"ticket": {result.ticket_id}, "created": {str(result.created).lower()}}}')
    else:
        print(result.ticket_id)
    if wait:
        from swarmd.cli.progress import exit_code_for

        state = call(lambda: commands.wait_for_ticket(settings, result.ticket_id, timeout=None))
        raise typer.Exit(exit_code_for(state))


@app.command("run-ticket")
def run_ticket(
    ticket: Annotated[str, typer.Argument(help="A ticket id, or a ticket file to submit.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the ticket to finish.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds.")] = None,
    priority: Annotated[int | None, typer.Option(help="Priority when submitting a file.")] = None,
) -> None:
    """Run a ticket: with a daemon, hand it over (and --wait); without one, run it here."""
    from swarmd.cli import commands

    settings = settings_or_exit()
    setup_cli_logging(settings)
    if note := commands.offline_note(settings):
        print(note, file=sys.stderr, flush=True)
    outcome = call(
        lambda: commands.run_ticket(settings, ticket, wait=wait, timeout=timeout, priority=priority)
    )
    for line in outcome.lines:
        print(line)
    raise typer.Exit(outcome.exit_code)


@app.command()
def status(
    json_output: JsonOption = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until Ctrl-C.")] = False,
) -> None:
    """The daemon, its workers, the queue, the gate and the models."""
    from swarmd.cli import commands
    from swarmd.cli import status_view as statusview

    settings = settings_or_exit()
    if watch:
        statusview.watch(lambda: call(lambda: commands.gather_status(settings)))
        return
    report = call(lambda: commands.gather_status(settings))
    if json_output:
        from swarmd.cli.render import print_json

        print_json(report)
    else:
        statusview.print_status(console(), report)
    raise typer.Exit(report["exit_code"])


@app.command()
def tickets(
    state: Annotated[str | None, typer.Option(help="Only tickets in this state.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 100,
    json_output: JsonOption = False,
) -> None:
    """List tickets, newest first."""
    from swarmd.cli import commands
    from swarmd.cli.render import print_json, print_tickets
    from swarmd.models import TicketState

    settings = settings_or_exit()
    if state is not None and state not in {s.value for s in TicketState}:
        allowed = ", ".join(s.value for s in TicketState)
        fail(f"unknown state {state!r} (one of {allowed})", 2)
    rows = call(lambda: commands.list_tickets(settings, state=state, limit=limit))
    if json_output:
        print_json(rows)
    else:
        print_tickets(console(), rows)


@app.command()
def show(
    ticket: Annotated[str, typer.Argument(help="A ticket id.")],
    json_output: JsonOption = False,
) -> None:
    """One ticket with its tasks, attempts and outputs."""
    from swarmd.cli import commands
    from swarmd.cli.render import print_json, print_ticket

    settings = settings_or_exit()
    view = call(lambda: commands.show_ticket(settings, parse_ticket_id(ticket)))
    if json_output:
        print_json(view)
    else:
        print_ticket(console(), view.ticket, view.tasks, view.attempts, view.outputs)


@app.command()
def cancel(ref: Annotated[str, typer.Argument(help="A ticket id, or TICKET.TASK.")]) -> None:
    """Cancel a ticket or one task; running workers are stopped."""
    from swarmd.cli import commands

    settings = settings_or_exit()
    setup_cli_logging(settings)
    ticket_id, task = parse_ref(ref)
    names = call(lambda: commands.cancel(settings, ticket_id, task))
    print(f"cancelled {len(names)} task(s): {', '.join(names)}")


@app.command()
def retry(ref: Annotated[str, typer.Argument(help="A ticket id, or TICKET.TASK.")]) -> None:
    """Retry the dead, failed, cancelled or skipped tasks of a ticket, or one task."""
    from swarmd.cli import commands

    settings = settings_or_exit()
    setup_cli_logging(settings)
    ticket_id, task = parse_ref(ref)
    names = call(lambda: commands.retry(settings, ticket_id, task))
    print(f"retrying {len(names)} task(s): {', '.join(names)}")


@app.command()
def logs(
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new lines.")
    ] = False,
    ticket: Annotated[int | None, typer.Option(help="Only this ticket.")] = None,
    task: Annotated[str | None, typer.Option(help="Only this task (name or TICKET.TASK).")] = None,
    level: Annotated[str | None, typer.Option(help="At least this level.")] = None,
    event: Annotated[str | None, typer.Option(help="Only this event name.")] = None,
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many past lines.")] = 50,
    json_output: JsonOption = False,
) -> None:
    """Tail the structured log, readable or as JSON lines."""
    from swarmd.cli import log_view as logview

    settings = settings_or_exit()
    if task and "." in task:
        ticket_text, _, task = task.partition(".")
        ticket = parse_ticket_id(ticket_text)
    try:
        query = logview.LogQuery(ticket=ticket, task=task, level=level, event=event)
    except InputError as exc:
        fail(str(exc), exc.exit_code)
    try:
        logview.tail(settings.layout.log, query, lines=lines, follow=follow, as_json=json_output)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@app.command("config")
def show_config(json_output: JsonOption = False) -> None:
    """The effective settings, secrets masked."""
    from swarmd.cli.render import print_json, print_key_values

    settings = settings_or_exit()
    shown = settings.masked()
    if json_output:
        print_json(shown)
    else:
        print_key_values(console(), shown.items())


@app.command()
def agents(json_output: JsonOption = False) -> None:
    """The agents tickets may name: built-ins and those in agents.toml."""
    from swarmd.cli import commands
    from swarmd.cli.render import print_json, print_key_values

    settings = settings_or_exit()
    try:
        found = commands.list_agents(settings)
    except SwarmdError as exc:
        fail(str(exc), exc.exit_code)
    if json_output:
        print_json(found)
    else:
        print_key_values(console(), found.items())


@app.command("verify-archive")
def verify_archive(
    path: Annotated[Path, typer.Argument(help="A task or delivery archive.")],
) -> None:
    """Check every file of an archive against its manifest."""
    from swarmd.cli import commands

    if not path.is_file():
        fail(f"no archive at {path}", 2)
    try:
        problems = commands.verify_archive(path)
    except SwarmdError as exc:
        fail(str(exc), 1)
    if problems:
        fail(f"{path}: {problems[0]}", 1)
    print(f"{path}: ok")


@app.command()
def doctor(
    providers: Annotated[
        bool,
        typer.Option("--providers", help="Also send one cheap request to each provider."),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Check settings, home, disk, database, agents, providers, the unit and the daemon."""
    from swarmd.cli import doctor as checks
    from swarmd.config import load_settings

    findings = call(
        lambda: checks.diagnose(load_settings, checks.DoctorOptions(providers=providers))
    )
    if json_output:
        from swarmd.cli.render import print_json

        print_json(findings)
    else:
        checks.print_findings(console(), findings)
    raise typer.Exit(checks.exit_code(findings))


@app.command()
def backup(
    path: Annotated[Path, typer.Argument(help="The backup file, or a directory for it.")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
) -> None:
    """Copy the database to PATH, consistently, even while the daemon runs."""
    from swarmd.cli import commands

    settings = settings_or_exit()
    try:
        result = commands.backup(settings, path, overwrite=force)
    except SwarmdError as exc:
        fail(str(exc), exc.exit_code)
    print(
        f"backed up {result.check.contents} to {result.path} "
        f"({result.size_bytes} bytes, {result.seconds:.2f} s)"
    )


@app.command()
def restore(
    path: Annotated[Path, typer.Argument(help="A backup made by swarmd backup.")],
) -> None:
    """Put a backup in place of the database; the daemon must be stopped."""
    from swarmd.cli import commands

    settings = settings_or_exit()
    try:
        result = commands.restore(settings, path)
    except SwarmdError as exc:
        fail(str(exc), exc.exit_code)
    print(f"restored {result.check.contents} from {path} into {result.path}")
    if result.moved_aside is not None:
        print(f"the database it replaced is kept as {result.moved_aside}")


def parse_ticket_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        fail(f"{text!r} is not a ticket id (a positive number)", 2)
    if value <= 0:
        fail(f"{text!r} is not a ticket id (a positive number)", 2)
    return value


def parse_ref(ref: str) -> tuple[int, str | None]:
    """``42`` or ``42.copy``."""
    ticket_text, dot, task = ref.partition(".")
    if dot and not task:
        fail(f"{ref!r} is not TICKET or TICKET.TASK", 2)
    return parse_ticket_id(ticket_text), task or None


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
