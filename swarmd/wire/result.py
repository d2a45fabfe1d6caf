"""The result a worker reports at the end of its attempt, and how the daemon reads it.

    worker -> daemon   {"type": "result", "ok": true, "error": null, "retryable": true,
                        "reason": null,
                        "result": {...details: model, usage, tries, files, archive...}}

The details are the attempt's report (``swarmd.wire.report`` reads its model calls). A failure
may name its exit reason; a worker may name only the reasons in ``AGENT_REASONS``, so no
worker can pass its failure off as the daemon's (an interruption burns no attempt).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from swarmd.models import ExitReason

AGENT_REASONS = frozenset({ExitReason.ERROR, ExitReason.TRUNCATED})
"""The exit reasons an agent's own failure may carry; any other is read as ``ERROR``."""


@dataclass(frozen=True, slots=True)
class AgentResult:
    """What an agent reports: success, or an error and whether another attempt may help.

    ``reason`` names a failure more precisely than ``ERROR`` (``TRUNCATED``); ``None`` is
    ``ERROR``.
    """

    ok: bool
    error: str | None = None
    retryable: bool = True
    details: dict[str, Any] = field(default_factory=dict)
    reason: ExitReason | None = None

    @property
    def exit_reason(self) -> ExitReason:
        """How the failed attempt ended, as the agent saw it: ``ERROR`` unless it said more."""
        return self.reason if self.reason in AGENT_REASONS else ExitReason.ERROR

    def to_message(self) -> dict[str, Any]:
        return {
            "type": "result",
            "ok": self.ok,
            "error": self.error,
            "retryable": self.retryable,
            "reason": self.reason.value if self.reason is not None else None,
            "result": self.details,
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> AgentResult:
        """Read a ``result`` message; fields of the wrong type are read as a failure.

        A ``reason`` outside ``AGENT_REASONS`` (or unknown) is dropped.
        """
        details = message.get("result")
        error = message.get("error")
        reason = message.get("reason")
        known = {r.value: r for r in AGENT_REASONS}
        return cls(
            ok=message.get("ok") is True,
            error=str(error) if error is not None else None,
            retryable=message.get("retryable", True) is not False,
            details=dict(details) if isinstance(details, dict) else {},
            reason=known.get(reason) if isinstance(reason, str) else None,
        )
