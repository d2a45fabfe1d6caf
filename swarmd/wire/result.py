"""The result a worker reports at the end of its attempt, and how the daemon reads it.

    worker -> daemon   {"type": "result", "ok": true, "error": null, "retryable": true,
                        "result": {...details: model, usage, tries, files, archive...}}

The details are the attempt's report (``swarmd.wire.report`` reads its model calls).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class AgentResult:
    """What an agent reports: success, or an error and whether another attempt may help."""

    ok: bool
    error: str | None = None
    retryable: bool = True
    details: dict[str, Any] = field(default_factory=dict)

    def to_message(self) -> dict[str, Any]:
        return {
            "type": "result",
            "ok": self.ok,
            "error": self.error,
            "retryable": self.retryable,
            "result": self.details,
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> AgentResult:
        """Read a ``result`` message; fields of the wrong type are read as a failure."""
        details = message.get("result")
        error = message.get("error")
        return cls(
            ok=message.get("ok") is True,
            error=str(error) if error is not None else None,
            retryable=message.get("retryable", True) is not False,
            details=dict(details) if isinstance(details, dict) else {},
        )
