"""The ``swarmd`` command line: what runs in the user's shell, and nothing of the daemon's.

    app.py            typer: parse arguments, call one command, print, exit with its code
    exits.py          how a command ends: one ``swarmd: ...`` line and its exit code
    inputs.py         the command line's values, checked before anything is written
    home_check.py     is the home usable? checked before anything is written in it
    help_format.py    ``--help``: arguments by name (``FILE``), flags without a type
    commands.py       what each command does, over the store and the home, as plain data
    running.py        running one ticket (with a daemon or in this process), following it
    failures.py       why a task failed: the error, the attempt's log and its last lines
    doctor.py         ``swarmd doctor``: checks a host, one finding each
    render.py         tables, JSON and key/value listings
    quoting.py        untrusted text escaped and cut with an ellipsis
    settings_view.py  ``swarmd config``: ``NAME=value`` lines and unknown ``SWARMD_*``
    status_report.py  ``swarmd status`` as data, and its exit code
    status_view.py    ``swarmd status`` for people: the snapshot and ``--watch``
    progress.py       following one ticket until it finishes, and what holds it
    waiting.py        ``submit`` and ``run-ticket``, run without typer in their plain forms
    log_view.py       ``swarmd logs``: filter and follow the structured log

``app.py`` imports each command's module only inside that command, so ``swarmd --version``
and ``swarmd --help`` load no settings, logging or asyncio; the plain forms of ``submit``
and ``run-ticket`` (``swarmd submit FILE --wait``) do not load typer (``waiting.py``).
"""

import sys


def main() -> None:
    """The ``swarmd`` command. ``swarmd --version`` answers before the app is even built, and
    the plain forms of the commands a user waits on run without it."""
    if sys.argv[1:] == ["--version"]:
        from swarmd import __version__

        print(f"swarmd {__version__}")
        return
    from swarmd.cli.waiting import plain_form, run_plain

    try:
        if command := plain_form(sys.argv[1:]):
            run_plain(command)
        else:
            from swarmd.cli.app import main as run_app

            run_app()
    except SystemExit as exc:
        exit_now(exc.code)
    exit_now(0)


def exit_now(code: str | int | None) -> None:
    """End the process with ``code`` (as ``sys.exit`` takes it) without tearing it down.

    With the daemon's modules loaded, the interpreter's own teardown (freeing every module
    and object one by one) takes 100-150 ms after the command is done, and the user waits
    for it. The exit handlers still run (logging flushes its files there) and stdout and
    stderr are flushed; while any thread that the interpreter would wait for is alive, the
    ordinary exit is taken instead.
    """
    import atexit
    import os
    import threading

    if any(
        not thread.daemon and thread.is_alive()
        for thread in threading.enumerate()
        if thread is not threading.main_thread()
    ):
        sys.exit(code)
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            # What the interpreter does when stdout cannot be flushed at exit (a closed pipe).
            status = status or 120
    os._exit(status)
