"""The command line's own values, checked before anything is opened or written.

Every check raises ``InputError`` (exit 2) with one sentence naming the option, so a value
SQLite cannot hold (an integer past 64 bits) or a timeout that cannot be waited for (zero,
negative, NaN, infinity) never reaches the store.
"""

from __future__ import annotations

import math
import re

from swarmd.cli.quoting import literal
from swarmd.errors import InputError

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

_DIGITS = re.compile(r"[0-9]+")
_SHOWN_INPUT = 40  # characters of a refused value echoed back in the message


def looks_like_id(text: str) -> bool:
    """Whether ``text`` was typed as a ticket id (ASCII digits) rather than a file name."""
    return _DIGITS.fullmatch(text) is not None


def ticket_id(text: str) -> int:
    """A ticket id as typed: ASCII digits, from 1 to the largest 64-bit integer."""
    if not _DIGITS.fullmatch(text):
        raise InputError(f"{literal(text, _SHOWN_INPUT)} is not a ticket id (a positive number)")
    # Compare digit counts first: int() refuses strings past 4,300 digits with its own error.
    if len(text.lstrip("0")) > len(str(INT64_MAX)) or int(text) > INT64_MAX:
        raise InputError(
            f"{literal(text, _SHOWN_INPUT)} is not a ticket id: ids go up to {INT64_MAX}"
        )
    value = int(text)
    if value <= 0:
        raise InputError(f"{literal(text, _SHOWN_INPUT)} is not a ticket id (a positive number)")
    return value


def ticket_ref(ref: str) -> tuple[int, str | None]:
    """``42`` or ``42.copy``: a ticket, or one task of it."""
    ticket_text, dot, task = ref.partition(".")
    if dot and not task:
        raise InputError(f"{literal(ref, _SHOWN_INPUT)} is not TICKET or TICKET.TASK")
    return ticket_id(ticket_text), task or None


def whole_number(option: str, value: int, *, minimum: int, maximum: int = INT64_MAX) -> int:
    """An integer option within [minimum, maximum]."""
    if value < minimum or value > maximum:
        shown = (
            str(value) if len(str(value)) <= _SHOWN_INPUT else f"a {len(str(value))}-digit number"
        )
        if maximum == INT64_MAX:
            bounds = f"at least {minimum}" if value < minimum else f"at most {maximum}"
        else:
            bounds = f"from {minimum} to {maximum}"
        raise InputError(f"{option} must be {bounds}, not {shown}")
    return value


def priority(value: int | None) -> int | None:
    """``--priority``: any 64-bit integer (higher runs first)."""
    if value is None:
        return None
    return whole_number("--priority", value, minimum=INT64_MIN, maximum=INT64_MAX)


def seconds(option: str, value: float | None) -> float | None:
    """A duration option: a finite number of seconds above zero, or None when not given."""
    if value is None:
        return None
    if math.isnan(value) or math.isinf(value) or value <= 0:
        raise InputError(
            f"{option} must be a number of seconds above zero, not {value:g}"
            + (" (leave it out to wait without a limit)" if math.isinf(value) else "")
        )
    return value


_AGE = re.compile(r"([0-9]{1,9})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_AGE_SECONDS = 100 * 365 * 86400


def age(option: str, text: str | None) -> float | None:
    """An age such as ``7d``, ``12h``, ``30m``, ``90s``, ``2w``, or ``0`` (everything); in
    seconds, at most a hundred years. None when not given."""
    if text is None:
        return None
    if text == "0":
        return 0.0
    match = _AGE.fullmatch(text)
    seconds = int(match[1]) * _UNIT_SECONDS[match[2]] if match else None
    if seconds is None or seconds > MAX_AGE_SECONDS:
        raise InputError(
            f"{option} must be a whole number and a unit (s, m, h, d or w) up to 100 years, "
            f"like 7d or 12h, or 0 for everything finished; not {literal(text, _SHOWN_INPUT)}"
        )
    return float(seconds)
