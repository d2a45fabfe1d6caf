"""``swarmd config`` for people: the effective settings under the names users set, as a
``.env`` file would hold them, and the variables that set nothing.

Secrets are masked (``Settings.masked``). A setting with no value is shown commented out,
as ``.env.example`` shows it, so the output can be read as, and compared with, a ``.env``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from swarmd.cli.quoting import escape_char, printable
from swarmd.config import Settings
from swarmd.unknown_settings import setting_variables, unknown_variables

_BARE_VALUE = re.compile(r"[A-Za-z0-9_./:,@%+=*-]+")
_HEADER = "# swarmd's effective settings (environment, ./.env, defaults); secrets masked"


def env_lines(settings: Settings) -> list[str]:
    """One ``NAME=value`` line per setting, in ``Settings``' order."""
    shown = settings.masked()
    lines = [_HEADER]
    for field, variable in setting_variables().items():
        value = shown.get(field)
        if value is None or value in ([], {}):
            lines.append(f"# {variable}=")
            continue
        lines.append(f"{variable}={env_value(value)}")
    lines.append(
        f"# in effect: max load {settings.effective_max_load:g}"
        + (" (1.5 per usable CPU)" if settings.max_load is None else "")
        + f"; model chain {', '.join(printable(m) for m in settings.model_chain)}"
    )
    return lines


def env_value(value: object) -> str:
    """A value as it is written in ``.env``: bare when that is unambiguous, else quoted."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = str(int(value)) if value.is_integer() else repr(value)
    elif isinstance(value, list | tuple):
        text = ",".join(str(item) for item in value)
    elif isinstance(value, dict):
        if all(isinstance(v, str) for v in value.values()):
            text = ",".join(f"{k}={v}" for k, v in value.items())  # alias=provider pairs
        else:
            text = json.dumps(value, separators=(",", ":"))
    else:
        text = str(value)
    if _BARE_VALUE.fullmatch(text):
        return text
    return '"' + "".join(_escaped_in_quotes(char) for char in text) + '"'


def _escaped_in_quotes(char: str) -> str:
    # Inside double quotes, .env readers undo these escapes (python-dotenv, docker, systemd).
    if char in '"\\':
        return "\\" + char
    return escape_char(char)


def unknown_variable_warnings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = None
) -> list[str]:
    """A sentence for each ``SWARMD_*`` variable no setting reads (environment and ./.env)."""
    found = unknown_variables(os.environ if environ is None else environ, env_file)
    return [printable(unknown.describe(), 300) for unknown in found]
