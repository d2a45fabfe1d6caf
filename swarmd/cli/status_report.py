"""What ``swarmd status`` reports, as plain data, and the exit code a monitor should see.

Looking never writes: on a home with no database yet, the report says so and no file is
created.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from swarmd.addresses import mask_database_url
from swarmd.config import Settings
from swarmd.home import heartbeat_is_stale, running_daemon_pid
from swarmd.store import Store
from swarmd.store.stats import StoreStats, WindowStats, start_of_day
from swarmd.wire.report import UsageTotals

STATUS_WINDOWS = {"5m": 300.0, "60m": 3600.0}
FLEET_HORIZON_SECONDS = 300.0  # daemons heard from this recently are shown
NO_DAEMON_EXIT = 3
STALE_EXIT = 1


async def gather_status(settings: Settings) -> dict[str, Any]:
    """Everything ``swarmd status`` shows, and the exit code a monitor should see."""
    layout = settings.layout
    pid = running_daemon_pid(layout) if layout.root.is_dir() else None
    daemon: dict[str, Any] = {"running": pid is not None, "pid": pid}
    location = settings.store_location
    database: dict[str, Any] = (
        {"path": str(location), "exists": location.exists()}
        if isinstance(location, Path)
        else {"url": mask_database_url(location), "exists": True}
    )
    if not database["exists"]:
        return {
            "exit_code": NO_DAEMON_EXIT if pid is None else 0,
            "daemon": daemon,
            "database": database,
            "queue": {},
            "workers": [],
            "gate": None,
            "models": {},
            "throughput": {
                label: describe_window(_no_attempts(seconds), settings.max_concurrent_workers)
                for label, seconds in STATUS_WINDOWS.items()
            },
            "usage_today": describe_usage(UsageTotals.from_results([])),
        }
    now = time.time()
    fleet: list[dict[str, Any]] | None = None
    async with await Store.open(location) as store:
        queue = await store.queue_depth()
        if store.kind == "postgresql":
            fleet = await store.fleet(FLEET_HORIZON_SECONDS)
            beat = this_homes_beat(fleet, str(settings.home))
        else:
            beat = await store.read_heartbeat()
        stats = StoreStats(store.database)
        windows = await stats.attempt_windows(list(STATUS_WINDOWS.values()))
        usage = UsageTotals.from_results(await stats.results_since(start_of_day(now)))
    live: Mapping[str, Any] = {}
    exit_code = NO_DAEMON_EXIT if pid is None else 0
    if pid is not None and beat is not None:
        age = time.time() - float(beat["heartbeat_at"])
        stale = heartbeat_is_stale(age)
        daemon.update(
            pid=beat["pid"],
            version=beat["version"],
            uptime_s=round(time.time() - float(beat["started_at"]), 1),
            heartbeat_age_s=round(age, 1),
            stale=stale,
        )
        live = beat.get("status") or {}
        exit_code = STALE_EXIT if stale else 0
    elif pid is not None:
        daemon["stale"] = False
    report: dict[str, Any] = {
        "exit_code": exit_code,
        "daemon": daemon,
        "database": database,
        "queue": queue,
        "workers": list(live.get("workers", [])),
        "gate": live.get("gate"),
        "models": live.get("models", {}),
        "throughput": {
            label: describe_window(windows[seconds], settings.max_concurrent_workers)
            for label, seconds in STATUS_WINDOWS.items()
        },
        "usage_today": describe_usage(usage),
    }
    if fleet is not None:
        report["fleet"] = [
            {
                "host": member["host"],
                "home": member["home"],
                "pid": member["pid"],
                "heartbeat_age_s": member["heartbeat_age_s"],
                "workers": len(member["status"].get("workers", [])),
                "running": member["running"],
            }
            for member in fleet
        ]
    return report


def this_homes_beat(fleet: list[dict[str, Any]], home: str) -> dict[str, Any] | None:
    """This home's daemon among a fleet's, as a heartbeat row reads."""
    host = socket.gethostname()
    for member in fleet:
        if member["host"] == host and member["home"] == home:
            return {
                "pid": member["pid"],
                "started_at": member["started_at"],
                "heartbeat_at": time.time() - member["heartbeat_age_s"],
                "version": member["version"],
                "status": member["status"],
            }
    return None


def _no_attempts(window_s: float) -> WindowStats:
    return WindowStats(
        window_s=window_s,
        finished=0,
        succeeded=0,
        failed=0,
        p50_s=None,
        p95_s=None,
        busy_worker_s=0.0,
    )


def describe_window(window: WindowStats, max_workers: int) -> dict[str, Any]:
    """A window of attempts as ``swarmd status --json`` shows it.

    ``finished`` = ``succeeded`` + ``failed`` + ``interrupted_or_cancelled``: an attempt cut
    short by a shutdown, a crash or a cancel is neither a success nor a failure.
    """

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "window_s": window.window_s,
        "finished": window.finished,
        "succeeded": window.succeeded,
        "failed": window.failed,
        "interrupted_or_cancelled": window.finished - window.succeeded - window.failed,
        "per_minute": round(window.per_minute, 2),
        "p50_s": rounded(window.p50_s),
        "p95_s": rounded(window.p95_s),
        "busy_worker_s": round(window.busy_worker_s, 1),
        "utilisation": round(window.utilisation(max_workers), 4),
        "max_workers": max_workers,
    }


def describe_usage(usage: UsageTotals) -> dict[str, Any]:
    """Tokens and cost since midnight, in total and by model."""

    def shown(prompt: int, completion: int, cost: float) -> dict[str, Any]:
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "tokens": prompt + completion,
            "cost_usd": round(cost, 6),
        }

    total = usage.total
    return {
        **shown(total.prompt_tokens, total.completion_tokens, total.cost_usd),
        "by_model": {
            model: shown(u.prompt_tokens, u.completion_tokens, u.cost_usd)
            for model, u in sorted(usage.by_model.items())
        },
    }
