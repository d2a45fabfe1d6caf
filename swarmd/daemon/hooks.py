"""What the daemon does at the supervisor's milestones (``SupervisorHooks``): tell systemd,
write the heartbeat row, schedule delivery archives, raise alerts, count the gate's holds."""

from __future__ import annotations

import os
import time
from typing import Any

from swarmd import __version__
from swarmd.daemon.alerts import Alerter, AlertWatch
from swarmd.daemon.dashboard.snapshot import LiveStatus
from swarmd.daemon.delivery_queue import DeliveryQueue
from swarmd.daemon.gate import GateDecision
from swarmd.daemon.metrics.collector import GateHoldCounter
from swarmd.daemon.notify import SystemdNotifier
from swarmd.daemon.permits import PermitService
from swarmd.errors import StoreError
from swarmd.logs import get_logger
from swarmd.models import TicketState
from swarmd.store import Store

log = get_logger("swarmd.daemon.hooks")


class DaemonHooks:
    """sd_notify, the heartbeat row, delivery archives and alerts, at the supervisor's
    milestones. With ``announce`` false (``run-ticket`` in-process), the daemon's start and
    stop are not alerted. Each heartbeat's status is also published to ``live`` (the
    dashboard's view of workers, gate and models)."""

    def __init__(
        self,
        store: Store,
        notifier: SystemdNotifier,
        permits: PermitService,
        deliveries: DeliveryQueue,
        gate_holds: GateHoldCounter | None = None,
        alerts: AlertWatch | None = None,
        announce: bool = True,
        live: LiveStatus | None = None,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._permits = permits
        self._deliveries = deliveries
        self._gate_holds = gate_holds or GateHoldCounter()
        self._alerts = alerts or AlertWatch(
            Alerter(()), store, model_chain=(), gate_held_seconds=float("inf")
        )
        self._announce = announce
        self._live = live or LiveStatus()
        self._started_at = time.time()

    @property
    def started_at(self) -> float:
        return self._started_at

    def ready(self) -> None:
        self._notifier.ready()
        self._notifier.status("accepting work")
        if self._announce:
            self._alerts.daemon_started(pid=os.getpid(), version=__version__)

    def stopping(self) -> None:
        self._notifier.stopping()
        log.info("shutdown_started")
        if self._announce:
            self._alerts.daemon_stopped(pid=os.getpid(), version=__version__)

    async def heartbeat(self, snapshot: dict[str, Any]) -> None:
        status = {**snapshot, "models": self._permits.snapshot()}
        self._alerts.heartbeat(snapshot, status["models"])
        self._live.publish(status)
        try:
            await self._store.write_heartbeat(
                pid=os.getpid(), started_at=self._started_at, version=__version__, status=status
            )
        except StoreError as exc:
            # A shared database out of reach for a moment (a restart, a network blip) is
            # the leases' business: the supervisor fences its workers if it lasts.
            if not self._store.shared:
                raise
            log.warning("heartbeat_not_written", error=str(exc))
        self._notifier.watchdog()
        # A ticket finished by another process (a cancel from the command line) or left
        # undelivered by a daemon that died is delivered here.
        await self._deliveries.reconcile()

    async def ticket_finished(self, ticket_id: int, state: TicketState) -> None:
        self._deliveries.schedule(ticket_id, state)
        await self._alerts.ticket_finished(ticket_id, state)

    def task_dead(self, ticket_id: int, ref: str, error: str | None) -> None:
        self._alerts.task_dead(ticket_id, ref, error)

    def gate_held(self, decision: GateDecision) -> None:
        """The gate has just closed (it was open at the previous check)."""
        self._gate_holds.record(decision.hold.value if decision.hold else "unknown")
