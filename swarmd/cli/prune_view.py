"""What ``swarmd prune`` prints: each path removed (or that would be) with its size, the
tickets whose rows went, the space freed; and each path that could not be removed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmd.cli.quoting import printable
from swarmd.daemon.retention import PruneReport
from swarmd.outputs.paths import format_size


@dataclass(frozen=True, slots=True)
class PruneOutcome:
    report: PruneReport
    home: Path
    vacuum_bytes: int | None = None  # None: no --vacuum

    def _shown(self, path: Path) -> str:
        try:
            return printable(str(path.relative_to(self.home)))
        except ValueError:
            return printable(str(path))

    def lines(self) -> list[str]:
        report = self.report
        verb = "would remove" if report.dry_run else "removed"
        lines = [
            f"{verb} {self._shown(removal.path)} "
            f"(ticket {removal.ticket_id}, {removal.kind.replace('_', ' ')}, "
            f"{format_size(removal.bytes)})"
            for removal in report.removals
            if removal.error is None
        ]
        if report.tickets_removed:
            ids = ", ".join(str(ticket_id) for ticket_id in report.tickets_removed)
            lines.append(f"{verb} the rows of ticket(s) {ids}")
        for path in report.kept_worktrees:
            shown = self._shown(path)
            lines.append(f"kept {shown} and its ticket's row: worktrees kept for a person")
        freed = report.freed_bytes + (self.vacuum_bytes or 0)
        if not report.removals and not report.tickets_removed:
            lines.append("nothing to prune")
        lines.append(f"{'would free' if report.dry_run else 'freed'} {format_size(freed)}")
        return lines

    def problems(self) -> list[str]:
        return [
            f"could not remove {self._shown(removal.path)}: {printable(removal.error or '')}"
            for removal in self.report.failures
        ]

    def as_json(self) -> dict[str, Any]:
        report = self.report
        return {
            "dry_run": report.dry_run,
            "removed": [
                {
                    "ticket": removal.ticket_id,
                    "kind": removal.kind,
                    "path": str(removal.path),
                    "bytes": removal.bytes,
                    "error": removal.error,
                }
                for removal in report.removals
            ],
            "tickets_removed": report.tickets_removed,
            "kept_worktrees": [str(path) for path in report.kept_worktrees],
            "database_bytes": report.database_bytes + (self.vacuum_bytes or 0),
            "freed_bytes": report.freed_bytes + (self.vacuum_bytes or 0),
        }
