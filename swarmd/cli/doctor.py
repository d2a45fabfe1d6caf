"""``swarmd doctor``: is this host ready to run swarmd, and if not, what to do about it.

Each check gives one ``Finding``: ok, warn or fail, what it found, and for anything short of
ok, what to do. Checks that need settings are skipped when the settings do not load.
Provider checks send one cheap request each (a model listing), and only when asked.
"""

from __future__ import annotations

import asyncio
import enum
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.text import Text

from swarmd.cli.home_check import require_usable_home
from swarmd.cli.quoting import printable
from swarmd.config import OFFLINE_MODEL, Settings
from swarmd.errors import EnvironmentProblem, SwarmdError
from swarmd.home import HomeLayout
from swarmd.llm.provider_config import Endpoint, ProviderConfig
from swarmd.llm.providers import HTTPProvider
from swarmd.llm.router import build_providers
from swarmd.outputs.paths import format_size
from swarmd.unknown_settings import unknown_variables

SYSTEMD_UNIT = Path("/etc/systemd/system/swarmd.service")
DISK_WARN_BYTES = 2**30
DISK_FAIL_BYTES = 100 * 2**20
PROVIDER_TIMEOUT_SECONDS = 10.0

DiskUsage = Callable[[Path], tuple[int, int, int]]
"""``shutil.disk_usage``'s shape: (total, used, free) bytes of the file system at a path."""


class Level(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    level: Level
    detail: str
    advice: str | None = None


@dataclass(frozen=True, slots=True)
class DoctorOptions:
    """What the checks may touch; tests point them at their own files and servers."""

    providers: bool = False
    systemd_unit: Path = SYSTEMD_UNIT
    disk_usage: DiskUsage = shutil.disk_usage
    transport: httpx.AsyncBaseTransport | None = None
    environ: Mapping[str, str] | None = None  # None: this process's environment
    env_file: Path | None = None  # None: ./.env, as the settings read it


async def diagnose(
    load: Callable[[], Settings], options: DoctorOptions | None = None
) -> list[Finding]:
    """Run every check, in the order a person would fix things."""
    options = options or DoctorOptions()
    unknown = check_unknown_variables(options)
    try:
        settings = load()
    except SwarmdError as exc:
        return [
            Finding("settings", Level.FAIL, str(exc), "fix it in the environment or in .env"),
            *unknown,
            check_systemd_unit(options.systemd_unit),
        ]
    location = settings.store_location
    database = (
        check_database_file(location)
        if isinstance(location, Path)
        else await asyncio.to_thread(check_database_server, location)
    )
    findings = [
        Finding("settings", Level.OK, f"loaded; home {settings.home}"),
        *unknown,
        check_home(settings.home),
        check_disk(settings.home, options.disk_usage, settings.min_free_disk_mb),
        database,
        check_agents(settings),
    ]
    if options.providers:
        findings += await check_providers(settings, options.transport)
    else:
        findings.append(describe_providers(settings))
    findings.append(check_systemd_unit(options.systemd_unit))
    findings.append(await check_daemon(settings, database_usable=database.level is Level.OK))
    return findings


def exit_code(findings: Iterable[Finding]) -> int:
    return 1 if any(f.level is Level.FAIL for f in findings) else 0


def check_unknown_variables(options: DoctorOptions) -> list[Finding]:
    """A warning for each ``SWARMD_*`` variable no setting reads: a misspelled setting is
    otherwise ignored in silence."""
    environ = os.environ if options.environ is None else options.environ
    return [
        Finding(
            "settings",
            Level.WARN,
            printable(unknown.describe(), 300),
            f"rename it to {unknown.suggestion}" if unknown.suggestion else "remove it",
        )
        for unknown in unknown_variables(environ, options.env_file)
    ]


# -- the home and its disk ----------------------------------------------------------------


def check_home(home: Path) -> Finding:
    if not home.exists():
        try:
            require_usable_home(HomeLayout(home), writing=True)
        except EnvironmentProblem as exc:
            return Finding("home", Level.FAIL, str(exc), "point SWARMD_HOME at a usable directory")
        return Finding(
            "home",
            Level.WARN,
            f"{home} does not exist yet",
            "it is created on first use; or create it now: mkdir -p -m 750 " + str(home),
        )
    if not home.is_dir():
        return Finding("home", Level.FAIL, f"{home} is not a directory", "point SWARMD_HOME at one")
    home_stat = home.stat()
    mode = home_stat.st_mode
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        return Finding(
            "home",
            Level.FAIL,
            f"{home} is writable by every user (mode {stat.S_IMODE(mode):o})",
            f"chmod o-w {home}: anyone could replace the database or an agent's outputs",
        )
    try:
        with tempfile.TemporaryFile(dir=home):
            pass
    except OSError as exc:
        return Finding(
            "home",
            Level.FAIL,
            f"cannot write in {home}: {exc.strerror}",
            "run swarmd as the directory's owner, or fix its permissions",
        )
    owner = home_stat.st_uid
    if owner != os.geteuid():
        return Finding(
            "home",
            Level.WARN,
            f"{home} belongs to uid {owner}, not to this user ({os.geteuid()})",
            "run swarmd as the user who owns its home",
        )
    return Finding("home", Level.OK, f"{home}, mode {stat.S_IMODE(mode):o}, writable")


def check_disk(home: Path, disk_usage: DiskUsage, min_free_disk_mb: int = 0) -> Finding:
    """Fail when the database cannot grow, or when the gate holds spawns already
    (``SWARMD_MIN_FREE_DISK_MB``); warn below 1 GiB, or below twice the gate's limit."""
    where = _existing_ancestor(home)
    free = disk_usage(where)[2]
    shown = format_size(free)
    gate_bytes = min_free_disk_mb * 2**20
    gate = f"SWARMD_MIN_FREE_DISK_MB={min_free_disk_mb}"
    if free < DISK_FAIL_BYTES:
        return Finding(
            "disk",
            Level.FAIL,
            f"{shown} free on the file system of {where}",
            "free space now: the database and workspaces cannot grow",
        )
    if free < gate_bytes:
        return Finding(
            "disk",
            Level.FAIL,
            f"{shown} free on the file system of {where}, below {gate}: no worker starts",
            "free space now: `swarmd prune --dry-run` shows what retention would remove",
        )
    if free < max(DISK_WARN_BYTES, 2 * gate_bytes):
        advice = "free some space; below 100 MiB the database cannot grow"
        if gate_bytes:
            advice = (
                f"free some space (`swarmd prune --dry-run` shows what retention would "
                f"remove); below {gate} no worker starts"
            )
        return Finding("disk", Level.WARN, f"{shown} free on the file system of {where}", advice)
    return Finding("disk", Level.OK, f"{shown} free on the file system of {where}")


# -- the database and the agents ----------------------------------------------------------


def check_database_file(db_path: Path) -> Finding:
    from swarmd.store.backup import check_database

    if not db_path.exists():
        return Finding("database", Level.OK, f"no database yet at {db_path}; created on first use")
    try:
        found = check_database(db_path)
    except SwarmdError as exc:
        return Finding("database", Level.FAIL, str(exc), "check the home's permissions")
    if not found.ok:
        return Finding(
            "database",
            Level.FAIL,
            found.describe(),
            "stop the daemon and put a backup in its place: swarmd restore BACKUP "
            "(the broken file is kept beside it)",
        )
    detail = f"{found.describe()}, {format_size(found.size_bytes)}"
    if found.notes:
        detail += f"; {found.notes[0]}"
    return Finding("database", Level.OK, detail)


def check_database_server(url: str) -> Finding:
    """A fleet's PostgreSQL database: reachable, which server, which schema."""
    from swarmd.addresses import mask_database_url
    from swarmd.store.postgres.connection import probe
    from swarmd.store.postgres.schema import LATEST_VERSION

    shown = mask_database_url(url)
    try:
        server, schema = probe(url)
    except SwarmdError as exc:
        return Finding("database", Level.FAIL, str(exc), "check SWARMD_DATABASE_URL and the server")
    detail = f"{shown}: PostgreSQL {server}, schema version {schema}"
    if schema > LATEST_VERSION:
        return Finding(
            "database",
            Level.FAIL,
            f"{detail}, newer than the {LATEST_VERSION} this swarmd knows",
            "upgrade swarmd on this host",
        )
    if schema < LATEST_VERSION:
        return Finding(
            "database", Level.OK, f"{detail}; migrated to {LATEST_VERSION} by the next daemon"
        )
    return Finding("database", Level.OK, detail)


def check_agents(settings: Settings) -> Finding:
    from swarmd.agents.registry import load_agent_registry

    try:
        registry = load_agent_registry(settings.agents_path)
    except SwarmdError as exc:
        return Finding("agents", Level.FAIL, str(exc), f"fix {settings.agents_path}")
    names = registry.names()
    source = str(settings.agents_path) if settings.agents_path.exists() else "built-ins only"
    return Finding("agents", Level.OK, f"{len(names)} agents ({source}): {', '.join(names)}")


# -- providers ----------------------------------------------------------------------------


def describe_providers(settings: Settings) -> Finding:
    if settings.model_chain == (OFFLINE_MODEL,):
        return Finding(
            "providers",
            Level.WARN,
            "no LLM provider is configured: llm tasks use the offline echo/echo model",
            "set SWARMD_PRIMARY_MODEL and the provider's key (e.g. OPENAI_API_KEY)",
        )
    names = ", ".join(checked_providers(settings))
    return Finding(
        "providers",
        Level.OK,
        f"configured: {names} (not contacted; --providers sends one request to each)",
    )


def checked_providers(settings: Settings) -> list[str]:
    """The providers the model chain names, and every one with a key or URL set."""
    from swarmd.daemon.providers import provider_config

    config = provider_config(settings)
    named = {config.provider_name(model) for model in settings.model_chain}
    configured = {
        name
        for name, value in (
            ("openai", settings.openai_api_key or settings.openai_base_url),
            ("anthropic", settings.anthropic_api_key or settings.anthropic_base_url),
            ("minimax", settings.minimax_api_key or settings.minimax_base_url),
            ("ollama", settings.ollama_host),
        )
        if value
    }
    return sorted(name for name in named | configured if name in config.endpoints)


async def check_providers(
    settings: Settings, transport: httpx.AsyncBaseTransport | None
) -> list[Finding]:
    from swarmd.daemon.providers import provider_config
    from swarmd.logs import Redactor

    config = provider_config(settings)
    redactor = Redactor(config.secrets)
    names = checked_providers(settings)
    if not names:
        return [describe_providers(settings)]
    async with httpx.AsyncClient(
        transport=transport, timeout=PROVIDER_TIMEOUT_SECONDS, follow_redirects=False
    ) as client:
        found = await asyncio.gather(
            *(check_provider(client, name, config.endpoints[name]) for name in names)
        )
    # Nothing a provider answers is printed unscrubbed: an error body may echo the key.
    return [
        Finding(f.check, f.level, redactor.scrub(f.detail), f.advice and redactor.scrub(f.advice))
        for f in found
    ]


async def check_provider(client: httpx.AsyncClient, name: str, endpoint: Endpoint) -> Finding:
    """One model-listing request: reachable, and is the key accepted?"""
    provider = build_providers(ProviderConfig(endpoints={name: endpoint}))[name]
    assert isinstance(provider, HTTPProvider)
    url = provider.models_url()
    headers = provider.headers()
    headers.pop("content-type", None)
    check = f"provider {name}"
    key_variable = f"{name.upper()}_API_KEY"
    try:
        response = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        return Finding(
            check,
            Level.FAIL,
            f"{url} is unreachable: {type(exc).__name__}: {exc}",
            f"check the network and {name.upper()}_BASE_URL"
            if name != "ollama"
            else "check that Ollama runs and OLLAMA_HOST",
        )
    status = response.status_code
    if status < 300:
        return Finding(check, Level.OK, f"{url} answered {status}: reachable, key accepted")
    if status in (401, 403):
        return Finding(
            check, Level.FAIL, f"{url} refused the key (HTTP {status})", f"check {key_variable}"
        )
    if status in (404, 405):
        return Finding(
            check,
            Level.WARN,
            f"{url} is not served (HTTP {status}): reachable, but the key was not checked",
            "run a small ticket to check the key",
        )
    if status == 429:
        return Finding(
            check,
            Level.WARN,
            f"{url} is rate limited (HTTP 429): reachable, key accepted",
            "lower SWARMD_API_RATE_LIMIT_RPM if this persists",
        )
    return Finding(
        check,
        Level.WARN,
        f"{url} answered HTTP {status}",
        "the provider may be having trouble; check its status page",
    )


# -- systemd and the daemon ---------------------------------------------------------------


def check_systemd_unit(unit: Path) -> Finding:
    if not unit.exists():
        return Finding("systemd", Level.OK, f"no unit at {unit} (not installed as a service)")
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return Finding(
            "systemd",
            Level.WARN,
            f"{unit} is installed, but systemd-analyze is missing to verify it",
            "install systemd's tools to check the unit",
        )
    try:
        result = subprocess.run(
            [analyze, "verify", "--man=no", str(unit)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Finding("systemd", Level.WARN, f"systemd-analyze could not run: {exc}")
    # verify exits 0 on unknown keys and other mistakes it only warns about: any output
    # at all is a finding.
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or output:
        first = output.splitlines()[0] if output else f"exit status {result.returncode}"
        return Finding(
            "systemd",
            Level.FAIL if result.returncode else Level.WARN,
            f"systemd-analyze verify {unit}: {first}",
            "fix the unit (compare with systemd/swarmd.service), then systemctl daemon-reload",
        )
    return Finding("systemd", Level.OK, f"{unit} verifies cleanly")


async def check_daemon(
    settings: Settings, *, database_usable: bool = True, now: float | None = None
) -> Finding:
    from swarmd.home import HEARTBEAT_STALE_SECONDS, heartbeat_is_stale, running_daemon_pid

    if not settings.home.is_dir():
        return Finding("daemon", Level.WARN, "no daemon can run until the home is a directory")
    pid = running_daemon_pid(settings.layout)
    if pid is None:
        return Finding(
            "daemon",
            Level.WARN,
            "no daemon is running on this home",
            "start it: systemctl start swarmd, or swarmd run",
        )
    if not database_usable:
        return Finding(
            "daemon",
            Level.FAIL,
            f"pid {pid} runs on a database that failed its check",
            "stop it (systemctl stop swarmd), then swarmd restore BACKUP",
        )
    beat = await _read_heartbeat(settings)
    if beat is None:
        return Finding(
            "daemon",
            Level.WARN,
            f"pid {pid} holds the lock but has written no heartbeat yet",
            "if this lasts, see swarmd logs",
        )
    age = (time.time() if now is None else now) - float(beat["heartbeat_at"])
    if heartbeat_is_stale(age):
        return Finding(
            "daemon",
            Level.FAIL,
            f"pid {pid}'s heartbeat is {age:.0f} s old (stale after {HEARTBEAT_STALE_SECONDS:g} s)",
            "its loop is stuck: see swarmd logs, then restart it (systemctl restart swarmd)",
        )
    return Finding("daemon", Level.OK, f"pid {pid}, heartbeat {age:.1f} s ago")


async def _read_heartbeat(settings: Settings) -> dict[str, Any] | None:
    from swarmd.cli.status_report import FLEET_HORIZON_SECONDS, this_homes_beat
    from swarmd.store import Store

    if not settings.store_exists:
        return None
    try:
        async with await Store.open(settings.store_location) as store:
            if store.kind == "postgresql":
                fleet = await store.fleet(FLEET_HORIZON_SECONDS)
                return this_homes_beat(fleet, str(settings.home))
            return await store.read_heartbeat()
    except SwarmdError:
        return None


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


_LEVEL_STYLES = {Level.OK: "green", Level.WARN: "yellow", Level.FAIL: "bold red"}


def print_findings(console: Console, findings: Sequence[Finding]) -> None:
    """One line per check: its level, its name, what it found, and what to do."""
    width = max((len(f.check) for f in findings), default=0)
    for finding in findings:
        line = Text()
        line.append(f"{finding.level.value:<5}", style=_LEVEL_STYLES[finding.level])
        line.append(f" {finding.check:<{width}}  ", style="bold")
        line.append(printable(finding.detail))
        if finding.advice:
            advice = f" -> {printable(finding.advice)}"
            line.append(advice, style="dim" if finding.level is Level.OK else None)
        console.print(line, soft_wrap=True)
