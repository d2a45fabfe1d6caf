"""Structured logging: JSON lines to ``logs/swarmd.jsonl``, readable on a terminal, never a secret.

Events are snake_case names with key-value pairs (``attempt_finished task=4.copy ...``);
ticket and task ids are bound through contextvars. Every line passes the redactor, which
replaces each configured secret (and anything shaped like an API key) before rendering.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

import structlog

_KEY_SHAPES = re.compile(r"\b(sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,})")
_SECRET_FIELDS = frozenset({"api_key", "authorization", "x-api-key", "password", "token_secret"})
REDACTED = "[REDACTED]"


class Redactor:
    """A structlog processor that scrubs secrets from every value of an event."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _KEY_SHAPES.sub(REDACTED, text)

    def scrub_data(self, value: Any) -> Any:
        """``value`` (JSON-like data) with every secret replaced, as in a log line."""
        return self._scrub_value(value)

    def _scrub_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self._scrub_item(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub_value(v) for v in value]
        if isinstance(value, BaseException):
            return self.scrub(str(value))
        return value

    def _scrub_item(self, key: str, value: Any) -> Any:
        if key.lower() in _SECRET_FIELDS and value:
            return REDACTED
        return self._scrub_value(value)

    def __call__(
        self, _logger: Any, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event):
            event[key] = self._scrub_item(key, event[key])
        return event


class JSONLinesFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter, rendering each record once however many times it is asked.

    The file handler renders a record twice (its size check renders it too), and stderr
    shares this formatter when it is not a terminal: three renderings of every line (about
    a fifth of the daemon's samples in a profile of 480 short tasks) become one.
    """

    def format(self, record: logging.LogRecord) -> str:
        rendered: str | None = record.__dict__.get(_RENDERED)
        if rendered is None:
            rendered = super().format(record)
            record.__dict__[_RENDERED] = rendered
        return rendered


_RENDERED = "_swarmd_json_line"


def configure_logging(
    *,
    level: str = "info",
    log_path: Path | None = None,
    secrets: Iterable[str] = (),
    console: bool = True,
    max_bytes: int = 50 * 1024 * 1024,
    backups: int = 3,
) -> None:
    """Send structlog events to the JSON-lines file and, if asked, to stderr.

    stderr gets the console renderer on a terminal and JSON lines otherwise (journald keeps
    them greppable). Safe to call more than once: handlers are replaced, not stacked.
    """
    redactor = Redactor(secrets)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    root = logging.getLogger("swarmd")
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.setLevel(level.upper())
    root.propagate = False

    json_formatter = JSONLinesFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        foreign_pre_chain=shared,
    )
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            log_path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        file_handler.setFormatter(json_formatter)
        root.addHandler(file_handler)
    if console:
        stream = logging.StreamHandler(sys.stderr)
        if sys.stderr.isatty():
            stream.setFormatter(
                structlog.stdlib.ProcessorFormatter(
                    processors=[
                        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        structlog.dev.ConsoleRenderer(colors=True),
                    ],
                    foreign_pre_chain=shared,
                )
            )
        else:
            stream.setFormatter(json_formatter)
        root.addHandler(stream)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "swarmd") -> Any:
    """A structlog logger under the ``swarmd`` hierarchy."""
    return structlog.get_logger(name)


def bind_task(ticket_id: int, task: str, attempt: int | None = None) -> None:
    """Bind ticket and task ids to every event logged in this context."""
    structlog.contextvars.bind_contextvars(ticket=ticket_id, task=task)
    if attempt is not None:
        structlog.contextvars.bind_contextvars(attempt=attempt)
