"""Typed reads of one ticket table: each refusal names the table and the field."""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any, NoReturn

from swarmd.errors import TicketError
from swarmd.text import quote, unsafe_in_line

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""Task and agent names: no dots, so ``TICKET.TASK`` splits unambiguously."""

CHECK_FIELDS: dict[str, frozenset[str]] = {
    "file_exists": frozenset({"path"}),
    "command_succeeds": frozenset({"command"}),
    "tests_pass": frozenset({"command"}),  # a repository ticket's tests, in its merged tree
    "git_clean": frozenset(),  # a repository ticket's worktree holds no uncommitted change
}
"""The verify checks, each with the fields it requires (and the only ones it accepts)."""

MAX_MODEL_CHARS = 200

MAX_SECONDS = 365 * 24 * 3600
"""The longest a timeout may be: a year. Past it a deadline is a mistake (and a float past
about 1e308 is infinite)."""


class FieldReader:
    """Typed reads of one table's optional fields; each refusal names ``where`` and the field."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.data = data
        self.where = where

    def refuse(self, problem: str) -> NoReturn:
        raise TicketError(f"{self.where}: {problem}")

    def refuse_unknown(self, allowed: frozenset[str]) -> None:
        for key in self.data:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                hint = f' (did you mean "{close[0]}"?)' if close else ""
                self.refuse(f"unknown field {quote(str(key))}{hint}")

    def _typed(self, field: str, kind: type | tuple[type, ...], expected: str) -> Any:
        value = self.data.get(field)
        if value is None:
            return None
        if isinstance(value, bool) and kind is not bool:  # bool is an int to isinstance
            self.refuse(f'field "{field}" must be {expected}, not a boolean')
        if not isinstance(value, kind):
            self.refuse(f'field "{field}" must be {expected}, not {describe_kind(value)}')
        return value

    def _string(self, value: Any, label: str) -> str:
        if not isinstance(value, str):
            self.refuse(f"{label} must be a string, not {describe_kind(value)}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.refuse(f"{label} is not valid Unicode (it holds a lone surrogate)")
        return value

    def text(self, field: str, *, max_chars: int) -> str | None:
        """A one-line, non-blank string."""
        value = self.data.get(field)
        if value is None:
            return None
        value = self._string(value, f'field "{field}"').strip()
        if not value:
            self.refuse(f'field "{field}" is empty')
        if len(value) > max_chars:
            self.refuse(f'field "{field}" is longer than {max_chars} characters')
        self._refuse_unsafe_in_line(value, f'field "{field}"')
        return value

    def _refuse_unsafe_in_line(self, value: str, label: str) -> None:
        unsafe = unsafe_in_line(value)
        if unsafe is None:
            return
        if unicodedata.category(unsafe) in ("Cc", "Zl", "Zp"):
            self.refuse(f"{label} must be one line without control characters")
        self.refuse(
            f"{label} holds U+{ord(unsafe):04X}, an invisible formatting character: use plain text"
        )

    def prompt(self, field: str, *, max_bytes: int) -> str | None:
        value = self.data.get(field)
        if value is None:
            return None
        value = self._string(value, f'field "{field}"')
        if not value.strip():
            self.refuse(f'field "{field}" is empty')
        if "\0" in value:
            # A prompt reaches commands as an argument ({prompt}), and no argument can hold it.
            self.refuse(
                f'field "{field}" holds a NUL character (U+0000), which no program can receive'
            )
        size = len(value.encode("utf-8"))
        if size > max_bytes:
            self.refuse(f'field "{field}" is {size:,} bytes, over the limit of {max_bytes:,}')
        return value

    def name(self, field: str) -> str | None:
        value = self.data.get(field)
        if value is None:
            return None
        value = self._string(value, f'field "{field}"')
        if not NAME_PATTERN.fullmatch(value):
            self.refuse(
                f'field "{field}" is {quote(value)}: use 1 to 64 letters, digits, "-" or "_", '
                "starting with a letter or digit"
            )
        return value

    def names(self, field: str) -> tuple[str, ...] | None:
        items = self._typed(field, list, "an array of task names")
        if items is None:
            return None
        names = tuple(
            self._string(item, f'field "{field}" item {number}')
            for number, item in enumerate(items, start=1)
        )
        if len(set(names)) < len(names):
            twice = next(name for index, name in enumerate(names) if name in names[:index])
            self.refuse(f'field "{field}" lists {quote(twice)} twice')
        return names

    def argv(self, field: str) -> tuple[str, ...] | None:
        items = self.data.get(field)
        if items is None:
            return None
        return self._argv(items, f'field "{field}"')

    def _argv(self, items: Any, label: str) -> tuple[str, ...]:
        if not isinstance(items, list):
            self.refuse(f"{label} must be an array of strings, not {describe_kind(items)}")
        if not items:
            self.refuse(f"{label} is empty")
        argv = tuple(
            self._string(item, f"{label} item {number}")
            for number, item in enumerate(items, start=1)
        )
        if not argv[0].strip():
            self.refuse(f"{label} starts with an empty program name")
        for number, arg in enumerate(argv, start=1):
            if "\0" in arg:
                self.refuse(
                    f"{label} item {number} holds a NUL character (U+0000), "
                    "which no program can receive"
                )
        return argv

    def integer(self, field: str, *, minimum: int, maximum: int) -> int | None:
        value = self._typed(field, int, "an integer")
        if value is not None and not minimum <= value <= maximum:
            self.refuse(f'field "{field}" must be between {minimum} and {maximum}')
        return value  # type: ignore[no-any-return]

    def seconds(self, field: str) -> float | None:
        """A positive, finite number of seconds, at most ``MAX_SECONDS``."""
        value = self._typed(field, (int, float), "a number")
        if value is None:
            return None
        # Compared before float(): an integer of 400 digits does not fit in a float.
        if not (0 < value <= MAX_SECONDS) or not math.isfinite(value):
            self.refuse(
                f'field "{field}" must be a positive number of seconds, at most {MAX_SECONDS:,}'
            )
        return float(value)

    def boolean(self, field: str) -> bool | None:
        return self._typed(field, bool, "true or false")  # type: ignore[no-any-return]

    def models(self, field: str) -> tuple[str, ...] | None:
        value = self.data.get(field)
        if value is None:
            return None
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            self.refuse(f'field "{field}" must be "provider/model" or a non-empty array of them')
        models = tuple(self._string(item, f'field "{field}" entry') for item in items)
        for model in models:
            provider, _, name = model.partition("/")
            if not provider or not name or model != model.strip() or " " in model:
                self.refuse(f'field "{field}" entry {quote(model)} must be named provider/model')
            if unsafe_in_line(model) is not None or len(model) > MAX_MODEL_CHARS:
                self.refuse(
                    f'field "{field}" entry {quote(model)} must be one line of plain text, '
                    f"at most {MAX_MODEL_CHARS} characters"
                )
        return models

    def checks(self, field: str) -> tuple[dict[str, Any], ...] | None:
        items = self._typed(field, list, "an array of check tables")
        if items is None:
            return None
        if not items:
            self.refuse(f'field "{field}" is empty')
        return tuple(self._check(item, number) for number, item in enumerate(items, start=1))

    def _check(self, item: Any, number: int) -> dict[str, Any]:
        label = f'field "checks" item {number}'
        if not isinstance(item, dict):
            self.refuse(f"{label} must be a table, not {describe_kind(item)}")
        kind = item.get("type")
        if kind not in CHECK_FIELDS:
            expected = " or ".join(CHECK_FIELDS)
            self.refuse(f"{label} has type {quote(str(kind))}; expected {expected}")
        label = f"{label} ({kind})"
        for key in item:
            if key != "type" and key not in CHECK_FIELDS[kind]:
                self.refuse(f"{label}: unknown field {quote(str(key))}")
        for key in CHECK_FIELDS[kind]:
            if key not in item:
                self.refuse(f'{label}: missing required field "{key}"')
        if kind in ("command_succeeds", "tests_pass"):
            argv = self._argv(item["command"], f'{label} field "command"')
            return {"type": kind, "command": list(argv)}
        if kind == "git_clean":
            return {"type": kind}
        path = self._string(item["path"], f'{label} field "path"')
        pure = PurePosixPath(path)
        if not path.strip() or pure.is_absolute() or ".." in pure.parts or "\0" in path:
            self.refuse(
                f'{label}: path {quote(path)} must be relative to the workspace, without ".."'
            )
        return {"type": kind, "path": path}


def describe_kind(value: object) -> str:
    """How a decoded value is named in messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"  # TOML dates and times
