"""``SWARMD_*`` variables that name no setting: a misspelling is named, with the closest
setting, instead of being ignored in silence. Read from the environment and from ``.env``
as pydantic-settings reads it."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

from swarmd.config import ENV_PREFIX, Settings, variable_name

VARIABLES_SET_FOR_AGENTS = frozenset({"SWARMD_TICKET", "SWARMD_TASK"})
"""What swarmd sets in a command agent's environment: not settings, but not mistakes either."""


@dataclass(frozen=True, slots=True)
class UnknownVariable:
    """A ``SWARMD_*`` variable that no setting reads, where it was set, and the likely intent."""

    name: str
    source: str  # "the environment", or the .env file's path
    suggestion: str | None  # the closest valid name, if any is close

    def describe(self) -> str:
        hint = f"did you mean {self.suggestion}?" if self.suggestion else "it is not a setting"
        return f"{self.name} (in {self.source}) is ignored: {hint}"


def setting_variables() -> dict[str, str]:
    """Each setting's field name and the variable that sets it, in declaration order."""
    return {field: variable_name(field) for field in Settings.model_fields}


def unknown_variables(
    environ: Mapping[str, str], env_file: Path | None = None
) -> list[UnknownVariable]:
    """Every ``SWARMD_*`` variable of ``environ`` and of the ``.env`` file (read from the
    current directory, as the settings read it) that no setting reads.

    Settings match their variables whatever the case, so ``swarmd_max_load`` is a setting
    and ``SWARMD_MAX_LOAD_AVG`` is not.
    """
    known = {name.upper() for name in setting_variables().values()}
    found: dict[tuple[str, str], None] = {}
    sources: list[tuple[str, Iterable[str]]] = [("the environment", environ)]
    dotenv = _dotenv_names(env_file)
    if dotenv is not None:
        sources.append(dotenv)
    for source, names in sources:
        for name in names:
            upper = name.upper()
            if upper.startswith(ENV_PREFIX) and upper not in known | VARIABLES_SET_FOR_AGENTS:
                found[(name, source)] = None
    return [UnknownVariable(name, source, _closest(name.upper(), known)) for name, source in found]


def _dotenv_names(env_file: Path | None) -> tuple[str, Iterable[str]] | None:
    if env_file is None:
        configured = Settings.model_config.get("env_file")
        if not isinstance(configured, str | os.PathLike):
            return None
        env_file = Path(configured)
    path = env_file.expanduser()
    # A FIFO is read by the settings themselves; reading it here first would empty it.
    if not path.is_file():
        return None
    try:
        values = dotenv_values(path, encoding=Settings.model_config.get("env_file_encoding"))
    except (OSError, UnicodeDecodeError):
        return None  # the settings report an unreadable .env themselves
    return str(path), list(values)


def _closest(name: str, known: Iterable[str]) -> str | None:
    # Compared without the prefix they all share, which would make every name look close.
    stems = {variable.removeprefix(ENV_PREFIX): variable for variable in sorted(known)}
    matches = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), stems, n=1, cutoff=0.6)
    return stems[matches[0]] if matches else None
