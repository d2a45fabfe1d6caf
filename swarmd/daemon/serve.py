"""The composition root: wires settings, the store, the gate, the permits and the supervisor.

``serve()`` is ``swarmd run`` (and ``swarmd run-ticket`` when no daemon is running, with
``only_ticket`` set). It holds the home's lock for its whole life, so there is one daemon
per ``SWARMD_HOME``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from swarmd import __version__
from swarmd.agents.registry import AgentLookup, AgentRegistry
from swarmd.config import OFFLINE_MODEL, Settings
from swarmd.daemon.agent_watch import watched_agent_registry, watching_agents
from swarmd.daemon.alerts import AlertWatch, build_alerter
from swarmd.daemon.dashboard.running import running_dashboard
from swarmd.daemon.dashboard.snapshot import LiveStatus
from swarmd.daemon.delivery_queue import DeliveryQueue
from swarmd.daemon.gate import HostProbe, SpawnGate, disk_free_probe
from swarmd.daemon.hooks import DaemonHooks
from swarmd.daemon.metrics.collector import GateHoldCounter, MetricsCollector
from swarmd.daemon.metrics.exporter import MetricsExporter
from swarmd.daemon.notify import SystemdNotifier, watchdog_interval
from swarmd.daemon.permits import PermitService
from swarmd.daemon.providers import grantable_env, llm_job_settings, provider_config
from swarmd.daemon.repo_tasks import RepoTasks
from swarmd.daemon.repos import RepoWork
from swarmd.daemon.retention import Pruner, RetentionPolicy, run_retention
from swarmd.daemon.side_tasks import side_task, stop_when_failed
from swarmd.daemon.supervisor import Supervisor, SupervisorConfig
from swarmd.doorbell import Doorbell
from swarmd.errors import EnvironmentProblem, StoreError, SwarmdError
from swarmd.git.registry import load_repo_registry
from swarmd.home import HomeLock
from swarmd.logs import get_logger
from swarmd.models import TicketState
from swarmd.spawn.groups import scrub_environment
from swarmd.spawn.launcher import LaunchSettings, WorkerLauncher
from swarmd.spawn.spawners import ForkServer, WorkerSpawner, spawner_for
from swarmd.store import Store
from swarmd.store.backend import LeaseHolder
from swarmd.store.backup import check_database
from swarmd.store.stats import StoreStats

log = get_logger("swarmd.daemon.serve")

METRICS_INTERVAL_SECONDS = 10.0


def install_signal_handlers(stop: asyncio.Event, skip_grace: asyncio.Event) -> None:
    """The first SIGTERM or SIGINT asks for a clean stop; a second skips the grace period."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        # Only set events here: the loop does the work.
        if stop.is_set():
            skip_grace.set()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


def install_reload_handler(reload: asyncio.Event) -> None:
    """SIGHUP (``systemctl reload``) asks for the agent registry to be read again."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload.set)


async def serve(
    settings: Settings,
    *,
    base_env: Mapping[str, str],
    only_ticket: int | None = None,
    registry: AgentRegistry | None = None,
    stop: asyncio.Event | None = None,
    spawner: WorkerSpawner | None = None,
) -> TicketState | None:
    """Run the daemon until a signal (or, with ``only_ticket``, until that ticket finishes).

    ``stop`` lets the caller end the run as SIGTERM would (``run-ticket --timeout``).
    ``spawner`` is one the caller has started already (``worker_spawner`` by default); the
    daemon closes it when it stops.
    """
    lock = HomeLock(settings.layout.lock)
    lock.acquire()
    try:
        return await _serve_locked(
            settings, base_env, only_ticket, registry, stop or asyncio.Event(), spawner
        )
    finally:
        lock.release()


async def _serve_locked(
    settings: Settings,
    base_env: Mapping[str, str],
    only_ticket: int | None,
    registry: AgentRegistry | None,
    stop: asyncio.Event,
    spawner: WorkerSpawner | None = None,
) -> TicketState | None:
    agents: AgentLookup = registry or watched_agent_registry(settings.agents_path)
    location = settings.store_location
    if isinstance(location, Path):
        await refuse_corrupt_database(location)
    store = await Store.open(
        location,
        backoff_base=settings.retry_backoff_seconds,
        backoff_max=settings.retry_backoff_max_seconds,
        lease=LeaseHolder(
            owner=uuid.uuid4().hex,
            host=socket.gethostname(),
            home=str(settings.home),
            seconds=settings.lease_seconds,
        ),
    )
    skip_grace = asyncio.Event()
    install_signal_handlers(stop, skip_grace)
    reload_agents = asyncio.Event()
    if only_ticket is None:
        install_reload_handler(reload_agents)
    layout = settings.layout
    permits = PermitService(
        settings.api_rate_limit_rpm,
        limit_key=provider_config(settings).provider_name,
        fleet=store.shared_rates,
    )
    repos = repo_tasks(settings, store, base_env)
    doorbell = Doorbell(layout.doorbell)
    deliveries = DeliveryQueue(
        store,
        layout,
        only_ticket=only_ticket,
        repos=repos,
        on_settled=doorbell.tell_followers,
    )
    notifier = SystemdNotifier(base_env.get("NOTIFY_SOCKET"))
    spawner = spawner or worker_spawner(settings, base_env)
    launcher = WorkerLauncher(
        LaunchSettings(
            layout=layout,
            worker_timeout_seconds=settings.worker_timeout_seconds,
            heartbeat_seconds=settings.worker_heartbeat_seconds,
            grace_seconds=settings.shutdown_grace_seconds,
            model_chain=settings.model_chain,
            max_fix_rounds=settings.max_fix_rounds,
            llm=llm_job_settings(settings),
            secrets=grantable_env(settings, base_env),
        ),
        agents,
        base_env,
        answer_call=permits.answer_call,
        skip_grace=skip_grace,
        spawner=spawner,
    )
    gate = SpawnGate(
        HostProbe(),
        max_workers=settings.max_concurrent_workers,
        min_free_memory_mb=settings.min_free_memory_mb,
        max_load=settings.effective_max_load,
        settle_seconds=settings.spawn_settle_seconds,
        min_free_disk_mb=settings.min_free_disk_mb,
        disk_free_bytes=disk_free_probe(settings.home),
        disk_path=settings.home,
    )
    memory_limit = settings.worker_memory_limit_mb
    gate_holds = GateHoldCounter(disk=settings.min_free_disk_mb > 0)
    alerts = AlertWatch(
        build_alerter(settings, base_env),
        store,
        model_chain=settings.model_chain,
        gate_held_seconds=settings.notify_gate_held_minutes * 60,
    )
    live = LiveStatus()
    hooks = DaemonHooks(
        store,
        notifier,
        permits,
        deliveries,
        gate_holds,
        alerts,
        announce=only_ticket is None,
        live=live,
    )
    supervisor = Supervisor(
        store,
        gate,
        launcher,
        SupervisorConfig(
            max_workers=settings.max_concurrent_workers,
            memory_limit_bytes=memory_limit * 2**20 if memory_limit else None,
            hung_seconds=settings.worker_hung_seconds,
            heartbeat_seconds=heartbeat_interval(settings, base_env),
            only_ticket=only_ticket,
            default_max_attempts=settings.max_attempts,
            lease_seconds=settings.lease_seconds,
        ),
        stop=stop,
        hooks=hooks,
        repos=repos,
    )
    log.info(
        "daemon_started",
        pid=os.getpid(),
        version=__version__,
        home=str(settings.home),
        models=list(settings.model_chain),
        only_ticket=only_ticket,
    )
    if settings.model_chain == (OFFLINE_MODEL,):
        log.info("offline_model", detail="no provider is configured: llm tasks use echo/echo")
    try:
        # The fork server is closed (and awaited) only once the supervisor has stopped and
        # awaited every worker.
        async with (
            serving(spawner),
            metrics_exporter(settings, store, gate_holds, stop),
            watching_agents(agents, reload_agents, stop),
            alerts.alerter.running(
                lambda task: stop_when_failed(task, stop), grace=settings.notify_timeout_seconds
            ),
            pruning(settings, store, stop, alerts, enabled=only_ticket is None),
            running_dashboard(
                settings,
                live,
                enabled=only_ticket is None,
                started_at=hooks.started_at,
                secrets=(*settings.secrets, *forge_tokens(settings, base_env).values()),
                on_done=lambda task: stop_when_failed(task, stop),
            ),
            listening(doorbell, supervisor.outside_change),
        ):
            await repos.reconcile()
            await deliveries.reconcile()
            await supervisor.run()
            await deliveries.drain()
    finally:
        with contextlib.suppress(EnvironmentProblem):
            await store.clear_heartbeat(os.getpid())
        await store.close()
        log.info("daemon_stopped", pid=os.getpid())
    return supervisor.finished_state


GIT_VARIABLES = ("PATH", "HOME", "SSH_AUTH_SOCK", "GIT_SSH_COMMAND", "GIT_ASKPASS", "LANG")
"""What the daemon's git may see of its environment: enough to find git, and for push and
fetch, the credentials the person configured (helpers, an ssh agent)."""


def repo_tasks(settings: Settings, store: Store, base_env: Mapping[str, str]) -> RepoTasks:
    """Repository tickets' git work. It commits with the daemon's deny rules: every secret
    the daemon knows (provider keys, the forges' tokens of registered repositories) is
    refused in a task's files."""
    tokens = forge_tokens(settings, base_env)
    work = RepoWork(
        settings.layout,
        secrets=(*settings.secrets, *tokens.values()),
        env={name: base_env[name] for name in GIT_VARIABLES if name in base_env},
    )
    return RepoTasks(store, work, settings.layout, forge_tokens=tokens)


def forge_tokens(settings: Settings, base_env: Mapping[str, str]) -> dict[str, str]:
    """The forges' tokens of the registered repositories, by variable, as the daemon sees
    them."""
    tokens: dict[str, str] = {}
    with contextlib.suppress(SwarmdError):  # a broken registry fails its tickets' submits
        for entry in load_repo_registry(settings.repos_path).entries.values():
            if entry.forge is not None and base_env.get(entry.forge.token_env):
                tokens[entry.forge.token_env] = base_env[entry.forge.token_env]
    return tokens


def heartbeat_interval(settings: Settings, base_env: Mapping[str, str]) -> float:
    """How often the loop heartbeats (and pings systemd's watchdog): at most every 2 s, and
    at least twice per ``WatchdogSec`` when systemd sets a shorter one."""
    watchdog = watchdog_interval(
        base_env.get("WATCHDOG_USEC"), base_env.get("WATCHDOG_PID"), os.getpid()
    )
    return min(2.0, settings.worker_heartbeat_seconds, watchdog or 2.0)


def worker_spawner(settings: Settings, base_env: Mapping[str, str]) -> WorkerSpawner:
    """How workers start, per ``SWARMD_WORKER_START``: forked by a fork server, or exec'd."""
    return spawner_for(
        settings.worker_start,
        env=scrub_environment(base_env),
        home=settings.home,
        log_path=settings.layout.forkserver_log,
    )


@contextlib.asynccontextmanager
async def serving(spawner: WorkerSpawner) -> AsyncIterator[WorkerSpawner]:
    """Run the fork server, if that is the spawner, for the block; await its exit after."""
    if not isinstance(spawner, ForkServer):
        yield spawner
        return
    await spawner.start()
    try:
        yield spawner
    finally:
        await spawner.close()


@contextlib.asynccontextmanager
async def listening(doorbell: Doorbell, on_ring: Callable[[], None]) -> AsyncIterator[None]:
    """Answer the home's doorbell for the block; without one the daemon only polls."""
    if problem := doorbell.open(on_ring):
        log.warning("doorbell_unavailable", detail=problem)
    try:
        yield
    finally:
        doorbell.close()


async def refuse_corrupt_database(path: Path) -> None:
    """Raise ``StoreError`` if the database fails a quick check; never touch the file.

    SQLite opens a truncated or partly overwritten file without complaint and fails only
    on the pages it later reads, by which time the daemon has written into it.
    """
    if not path.exists():
        return
    check = await asyncio.to_thread(check_database, path, quick=True)
    if not check.ok:
        raise StoreError(
            f"{check.describe()}. The daemon did not start and left the file untouched: "
            "`swarmd doctor` shows more, and `swarmd restore BACKUP` puts a backup in its place"
        )


@contextlib.asynccontextmanager
async def metrics_exporter(
    settings: Settings, store: Store, gate_holds: GateHoldCounter, stop: asyncio.Event
) -> AsyncIterator[MetricsExporter | None]:
    """Run the metrics exporter as a side task while the block runs, when one is configured;
    refresh once more as the block ends.

    If the exporter dies, the daemon stops (``stop`` is set) and the block's exit raises
    its error, so the daemon exits non-zero rather than running without its metrics.
    """
    if settings.metrics_port is None and settings.metrics_textfile is None:
        yield None
        return
    collector = MetricsCollector(store, StoreStats(store.database), gate_holds=gate_holds)
    exporter = MetricsExporter(
        collector,
        interval=METRICS_INTERVAL_SECONDS,
        textfile=settings.metrics_textfile,
        port=settings.metrics_port,
    )
    await exporter.start()
    try:
        async with side_task(exporter.run(), name="metrics-exporter", stop=stop) as runner:
            yield exporter
    finally:
        # The final counts, with the attempts the shutdown closed, stay in the textfile.
        await exporter.refresh()
        await exporter.close()
    if not runner.cancelled() and (error := runner.exception()) is not None:
        raise SwarmdError(f"the metrics exporter failed: {error}") from error


@contextlib.asynccontextmanager
async def pruning(
    settings: Settings, store: Store, stop: asyncio.Event, alerts: AlertWatch, *, enabled: bool
) -> AsyncIterator[None]:
    """Run retention (``swarmd.daemon.retention``) once a day as the side task ``retention``
    while the block runs, its passes alerted; not for ``run-ticket``'s in-process daemon."""
    if not enabled:
        yield
        return
    pruner = Pruner(store, settings.layout, RetentionPolicy.from_settings(settings))
    async with side_task(run_retention(pruner, alerts=alerts), name="retention", stop=stop):
        yield
