"""The ``swarmd`` command: parse, call, print. No business logic lives here.

Exit codes: 0 done; 1 the ticket failed, was cancelled, or did not finish within
``--timeout``; 2 bad input, nothing written; 3 environment problem (an unusable home or
database, another daemon running; for ``status``, no daemon); 78 invalid settings;
130 interrupted (Ctrl-C).

Every value typed on the command line is checked (``swarmd.cli.inputs``) before settings
are loaded, and the home (``swarmd.cli.home_check``) before anything is written. A usage
mistake typer finds itself (an unknown option, a missing argument) is one line too.

Each command imports what it needs inside its own body, and reaches the rest of swarmd only
through ``swarmd.cli.commands`` (and the CLI's own views): ``swarmd --version`` and
``swarmd --help`` load no settings, logging, asyncio or rich.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from swarmd import __version__
from swarmd.cli import waiting
from swarmd.cli.exits import (
    call,
    checked,
    fail,
    say,
    settings_or_exit,
    usable_home,
    usage_problem,
)
from swarmd.cli.help_format import SwarmdCommand, SwarmdGroup
from swarmd.cli.quoting import literal, printable
from swarmd.cli.waiting import setup_cli_logging
from swarmd.errors import SwarmdError

if TYPE_CHECKING:
    from rich.console import Console

    from swarmd.config import Settings

app = typer.Typer(
    name="swarmd",
    help="Run swarms of LLM agents from a durable queue.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=SwarmdGroup,
)


@cache
def console() -> Console:
    from rich.console import Console

    return Console()


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


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


@app.command(cls=SwarmdCommand)
def run() -> None:
    """Run the daemon in the foreground (systemd's ExecStart)."""
    from swarmd.cli import commands

    settings = settings_or_exit()
    usable_home(settings, writing=True)
    setup_cli_logging(settings, console_output=True)
    # A misspelled setting is ignored by the settings: say so, loudly, but start.
    for warning in commands.log_unknown_variables():
        say(f"warning: {warning}")
    call(lambda: commands.run_daemon(settings))


@app.command(cls=SwarmdCommand)
def submit(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A ticket file, TOML or JSON.")],
    priority: Annotated[
        int | None, typer.Option(metavar="N", help="Override the ticket's priority.")
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help="Idempotency key: submitting the same ticket again returns the same id.",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the ticket to finish.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Queue a ticket; prints the new ticket id."""
    waiting.submit(file, priority=priority, key=key, wait=wait, json=json_output)


@app.command("run-ticket", cls=SwarmdCommand)
def run_ticket(
    ticket: Annotated[
        str, typer.Argument(metavar="TICKET", help="A ticket id, or a ticket file to submit.")
    ],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the ticket to finish.")] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Stop after this many seconds (exit 1): here, the tasks go back to the "
            "queue; on a daemon, the ticket keeps running.",
        ),
    ] = None,
    priority: Annotated[
        int | None, typer.Option(metavar="N", help="Priority when submitting a file.")
    ] = None,
) -> None:
    """Run a ticket: with a daemon, hand it over (and --wait); without one, run it here."""
    waiting.run_ticket(ticket, wait=wait, timeout=timeout, priority=priority)


@app.command(cls=SwarmdCommand)
def status(
    json_output: JsonOption = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[
        float, typer.Option(metavar="SECONDS", help="How often --watch refreshes.")
    ] = 1.0,
) -> None:
    """The daemon, its workers, the queue, the gate and the models."""
    from swarmd.cli import inputs, status_report
    from swarmd.cli import status_view as statusview

    checked(lambda: inputs.seconds("--interval", interval))
    settings = settings_or_exit()
    usable_home(settings, writing=False)
    if watch:
        statusview.watch(
            console(), lambda: call(lambda: status_report.gather_status(settings)), interval
        )
        return
    report = call(lambda: status_report.gather_status(settings))
    if json_output:
        from swarmd.cli.render import print_json

        print_json(report)
    else:
        statusview.print_status(console(), report)
    raise typer.Exit(report["exit_code"])


@app.command(cls=SwarmdCommand)
def tickets(
    state: Annotated[
        str | None, typer.Option(metavar="STATE", help="Only tickets in this state.")
    ] = None,
    limit: Annotated[int, typer.Option(metavar="N", help="How many, newest first.")] = 100,
    json_output: JsonOption = False,
) -> None:
    """List tickets, newest first."""
    from swarmd.cli import commands, inputs
    from swarmd.cli.render import print_json, print_tickets
    from swarmd.models import TicketState

    checked(lambda: inputs.whole_number("--limit", limit, minimum=1))
    if state is not None and state not in {s.value for s in TicketState}:
        allowed = ", ".join(s.value for s in TicketState)
        fail(f"unknown state {literal(state, 60)} (one of {allowed})", 2)
    settings = settings_or_exit()
    usable_home(settings, writing=False)
    rows = call(lambda: commands.list_tickets(settings, state=state, limit=limit))
    if json_output:
        print_json(rows)
    else:
        print_tickets(console(), rows)


@app.command(cls=SwarmdCommand)
def show(
    ticket: Annotated[str, typer.Argument(metavar="TICKET", help="A ticket id.")],
    json_output: JsonOption = False,
) -> None:
    """One ticket with its tasks, attempts and outputs, and why a task failed."""
    from swarmd.cli import inputs, ticket_view
    from swarmd.cli.render import print_json, print_ticket

    ticket_id = checked(lambda: inputs.ticket_id(ticket))
    settings = settings_or_exit()
    usable_home(settings, writing=False)
    view = call(lambda: ticket_view.show_ticket(settings, ticket_id))
    if json_output:
        print_json(view)
    else:
        print_ticket(
            console(),
            view.ticket,
            view.tasks,
            view.attempts,
            view.outputs,
            view.failures,
            view.repository,
            view.pruned,
            view.delivery,
        )


def settings_for_change(ref: str) -> tuple[Settings, int, str | None]:
    """What cancel and retry need: the ticket (and task) named, on a home and database that
    exist, with logging set up."""
    from swarmd.cli import commands, inputs

    ticket_id, task = checked(lambda: inputs.ticket_ref(ref))
    settings = settings_or_exit()
    usable_home(settings, writing=True)
    checked(lambda: commands.require_database(settings, ticket_id))
    setup_cli_logging(settings)
    return settings, ticket_id, task


@app.command(cls=SwarmdCommand)
def cancel(
    ref: Annotated[str, typer.Argument(metavar="TICKET", help="A ticket id, or TICKET.TASK.")],
) -> None:
    """Cancel a ticket or one task; running workers are stopped."""
    from swarmd.cli import commands

    settings, ticket_id, task = settings_for_change(ref)
    names = call(lambda: commands.cancel(settings, ticket_id, task))
    print(f"cancelled {len(names)} task(s): {', '.join(names)}")


@app.command(cls=SwarmdCommand)
def retry(
    ref: Annotated[str, typer.Argument(metavar="TICKET", help="A ticket id, or TICKET.TASK.")],
) -> None:
    """Retry the dead, failed, cancelled or skipped tasks of a ticket, or one task."""
    from swarmd.cli import commands

    settings, ticket_id, task = settings_for_change(ref)
    names = call(lambda: commands.retry(settings, ticket_id, task))
    print(f"retrying {len(names)} task(s): {', '.join(names)}")


@app.command(cls=SwarmdCommand)
def logs(
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new lines.")
    ] = False,
    ticket: Annotated[int | None, typer.Option(metavar="ID", help="Only this ticket.")] = None,
    task: Annotated[
        str | None,
        typer.Option(metavar="TASK", help="Only this task (name or TICKET.TASK)."),
    ] = None,
    level: Annotated[str | None, typer.Option(metavar="LEVEL", help="At least this level.")] = None,
    event: Annotated[
        str | None, typer.Option(metavar="EVENT", help="Only this event name.")
    ] = None,
    lines: Annotated[
        int, typer.Option("-n", "--lines", metavar="N", help="How many past lines.")
    ] = 50,
    json_output: JsonOption = False,
) -> None:
    """Tail the structured log, readable or as JSON lines."""
    from swarmd.cli import inputs
    from swarmd.cli import log_view as logview

    checked(lambda: inputs.whole_number("--lines", lines, minimum=0))
    if ticket is not None:
        only = ticket
        checked(lambda: inputs.whole_number("--ticket", only, minimum=1))
    if task and "." in task:
        ticket_text, _, task = task.partition(".")
        ticket = checked(lambda: inputs.ticket_id(ticket_text))
    query = checked(lambda: logview.LogQuery(ticket=ticket, task=task, level=level, event=event))
    settings = settings_or_exit()
    usable_home(settings, writing=False)
    try:
        logview.tail(settings.layout.log, query, lines=lines, follow=follow, as_json=json_output)
    except SwarmdError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@app.command("config", cls=SwarmdCommand)
def show_config(json_output: JsonOption = False) -> None:
    """The effective settings as NAME=value lines, secrets masked; and unknown SWARMD_*."""
    from swarmd.cli import settings_view
    from swarmd.cli.render import print_json

    settings = settings_or_exit()
    for warning in settings_view.unknown_variable_warnings():
        say(f"warning: {warning}")
    if json_output:
        print_json(settings.masked())
    else:
        for line in settings_view.env_lines(settings):
            print(line)


@app.command(cls=SwarmdCommand)
def agents(json_output: JsonOption = False) -> None:
    """The agents tickets may name: built-ins and those in agents.toml."""
    from swarmd.cli import commands
    from swarmd.cli.render import print_agents, print_json

    settings = settings_or_exit()
    try:
        found = commands.list_agents(settings)
    except SwarmdError as exc:
        fail(str(exc), exc.exit_code)
    if json_output:
        print_json(found)
    else:
        print_agents(console(), found)


@app.command(cls=SwarmdCommand)
def alert(
    event: Annotated[
        str, typer.Option("--event", metavar="EVENT", help="The event, e.g. daemon_down.")
    ],
    text: Annotated[
        str | None, typer.Option("--text", metavar="TEXT", help="The alert's words.")
    ] = None,
) -> None:
    """Send one alert now to SWARMD_NOTIFY_COMMAND and/or SWARMD_WEBHOOK_URL (exit 1 if not
    delivered): what the dead man's timer runs when `swarmd status` fails."""
    from swarmd.cli import commands
    from swarmd.logs import configure_logging

    settings = settings_or_exit()
    # Retries and failures go to stderr (the journal, under the timer), not to the home:
    # the home may be why the daemon is down.
    configure_logging(level=settings.log_level, secrets=settings.secrets, console=True)
    print(call(lambda: commands.send_alert(settings, event, text)))


@app.command("verify-archive", cls=SwarmdCommand)
def verify_archive(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="A task or delivery archive.")],
) -> None:
    """Check every file of an archive against its manifest; print every problem."""
    from swarmd.cli import commands

    if not path.is_file():
        fail(f"no archive at {path}", 2)
    try:
        problems = commands.verify_archive(path)
    except SwarmdError as exc:
        fail(str(exc), 1)
    if problems:
        count = len(problems)
        say(f"{path}: {count} problem{'s' if count > 1 else ''}")
        for problem in problems:
            print(f"  {printable(problem, 1000)}", file=sys.stderr)
        raise typer.Exit(1)
    print(f"{printable(str(path))}: ok")


@app.command(cls=SwarmdCommand)
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


@app.command(cls=SwarmdCommand)
def backup(
    path: Annotated[
        Path, typer.Argument(metavar="PATH", help="The backup file, or a directory for it.")
    ],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
) -> None:
    """Copy the database to PATH, consistently, even while the daemon runs."""
    from swarmd.cli import commands

    settings = settings_or_exit()
    usable_home(settings, writing=False)
    try:
        result = commands.backup(settings, path, overwrite=force)
    except SwarmdError as exc:
        fail(str(exc), exc.exit_code)
    print(
        f"backed up {result.check.contents} to {result.path} "
        f"({result.size_bytes} bytes, {result.seconds:.2f} s)"
    )


@app.command(cls=SwarmdCommand)
def restore(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="A backup made by swarmd backup.")],
) -> None:
    """Put a backup in place of the database; the daemon must be stopped."""
    from swarmd.cli import commands

    settings = settings_or_exit()
    usable_home(settings, writing=True)
    try:
        result = commands.restore(settings, path)
    except SwarmdError as exc:
        fail(str(exc), exc.exit_code)
    print(f"restored {result.check.contents} from {path} into {result.path}")
    if result.moved_aside is not None:
        print(f"the database it replaced is kept as {result.moved_aside}")


@app.command(cls=SwarmdCommand)
def prune(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="Remove every kind of file of tickets finished longer ago than AGE "
            "(7d, 12h, 30m, 0), whatever SWARMD_RETENTION_* says; rows keep their own limit.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be removed; remove nothing.")
    ] = False,
    vacuum: Annotated[
        bool,
        typer.Option(
            "--vacuum",
            help="Also rewrite the database once so it shrinks (the daemon must be stopped).",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Remove what finished tickets no longer need, as SWARMD_RETENTION_* says; print it."""
    from swarmd.cli import commands, inputs

    age = checked(lambda: inputs.age("--older-than", older_than))
    settings = settings_or_exit()
    usable_home(settings, writing=not dry_run)
    if not dry_run:
        setup_cli_logging(settings)
    outcome = call(lambda: commands.prune(settings, older_than=age, dry_run=dry_run, vacuum=vacuum))
    if json_output:
        from swarmd.cli.render import print_json

        print_json(outcome.as_json())
    else:
        for line in outcome.lines():
            print(line)
    for problem in outcome.problems():
        say(problem)
    raise typer.Exit(1 if outcome.problems() else 0)


def main() -> None:
    """Run the app; a usage mistake typer catches is one line and its exit code (2)."""
    try:
        code = app(prog_name="swarmd", standalone_mode=False)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.Abort:
        say("aborted")
        sys.exit(1)
    except Exception as exc:
        sys.exit(usage_problem(exc))
    sys.exit(code if isinstance(code, int) else 0)
