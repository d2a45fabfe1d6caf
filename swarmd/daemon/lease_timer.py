"""When a daemon of a fleet renews its leases, and how long it may trust them unrenewed.

The supervisor acts (renews, kills, fences); this keeps the times. Renewals come at least
six times a lease, and at every heartbeat; unrenewed for two thirds of a lease, the daemon
fences itself: well before the lease expires and another daemon may take its tasks.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(slots=True)
class LeaseTimer:
    lease_seconds: float
    heartbeat_seconds: float
    next_renewal: float = 0.0
    renewed_at: float | None = None  # None: no renewal yet

    @property
    def renew_every(self) -> float:
        return min(self.heartbeat_seconds, self.lease_seconds / 6)

    @property
    def fence_after(self) -> float:
        return self.lease_seconds * 2 / 3

    def due(self, now: float) -> bool:
        """Whether a renewal is due at ``now``; if so, the next one is scheduled."""
        if now < self.next_renewal:
            return False
        self.next_renewal = now + self.renew_every
        return True

    def renewed(self, at: float) -> None:
        """A renewal that started at ``at`` succeeded."""
        self.renewed_at = at

    def overdue(self, now: float) -> float | None:
        """How long the leases went unrenewed, when that is past ``fence_after``."""
        if self.renewed_at is None or now - self.renewed_at <= self.fence_after:
            return None
        return now - self.renewed_at

    def fresh(self, now: float) -> bool:
        """Whether new work may be claimed: renewed, and not overdue."""
        return self.renewed_at is not None and self.overdue(now) is None
