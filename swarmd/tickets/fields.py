"""Typed reads of one ticket table: each refusal names the table and the field."""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any, NoReturn

from swarmd.errors import TicketError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""Task and agent names: no dots, so ``TICKET.TASK`` splits unambiguously."""

CHECK_FIELDS: dict[str, frozenset[str]] = {
    "file_exists": frozenset({"path"}),
    "command_succeeds": frozenset({"command"}),
}
"""The verify checks, each with the fields it requires (and the only ones it accepts)."""


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
        if any(ord(char) < 32 or ord(char) == 127 for char in value):
            self.refuse(f'field "{field}" must be one line without control characters')
        return value

    def prompt(self, field: str, *, max_bytes: int) -> str | None:
        value = self.data.get(field)
        if value is None:
            return None
        value = self._string(value, f'field "{field}"')
        if not value.strip():
            self.refuse(f'field "{field}" is empty')
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
        if any("\0" in arg for arg in argv):
            self.refuse(f"{label} holds a NUL byte, which no program can receive")
        return argv

    def integer(self, field: str, *, minimum: int, maximum: int) -> int | None:
        value = self._typed(field, int, "an integer")
        if value is not None and not minimum <= value <= maximum:
            self.refuse(f'field "{field}" must be between {minimum} and {maximum}')
        return value  # type: ignore[no-any-return]

    def positive_number(self, field: str) -> float | None:
        value = self._typed(field, (int, float), "a number")
        if value is None:
            return None
        if not math.isfinite(value) or value <= 0:
            self.refuse(f'field "{field}" must be a positive number of seconds')
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
        if kind == "command_succeeds":
            argv = self._argv(item["command"], f'{label} field "command"')
            return {"type": kind, "command": list(argv)}
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


def quote(text: str) -> str:
    """A user's string in double quotes, with control characters escaped."""
    shown = json.dumps(text, ensure_ascii=False)
    try:
        shown.encode("utf-8")
    except UnicodeEncodeError:  # JSON escapes can spell lone surrogates
        return json.dumps(text)
    return shown
