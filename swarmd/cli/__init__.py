"""The ``swarmd`` command line: what runs in the user's shell, and nothing of the daemon's.

    app.py          typer: parse arguments, call one command, print, exit with its code
    commands.py     what each command does, over the store and the home, as plain data
    doctor.py       ``swarmd doctor``: checks a host, one finding each
    render.py       tables, JSON and key/value listings
    status_view.py  ``swarmd status``: the snapshot and ``--watch``
    progress.py     following one ticket until it finishes
    log_view.py     ``swarmd logs``: filter and follow the structured log

``app.py`` imports each command's module only inside that command, so ``swarmd --version``
and ``swarmd --help`` load no settings, logging or asyncio.
"""

import sys


def main() -> None:
    """The ``swarmd`` command. ``swarmd --version`` answers before the app is even built."""
    if sys.argv[1:] == ["--version"]:
        from swarmd import __version__

        print(f"swarmd {__version__}")
        return
    from swarmd.cli.app import main as run_app

    run_app()
