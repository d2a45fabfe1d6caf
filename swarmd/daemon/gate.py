"""Can we spawn a worker now? Slots, available memory, free disk and load, read through probes.

The gate never fails work: it only says "not yet" and why. The supervisor asks before each
spawn, logs a hold once when it starts and once when it ends (``hold_changed``), and shows
``last_decision`` in ``swarmd status``.
"""

from __future__ import annotations

import enum
import os
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

MB = 1024 * 1024

UNLIMITED_BYTES = 1 << 60
"""A cgroup limit this high means "no limit": cgroup v1 writes 2**63 rounded down to a page."""


class GateHold(enum.StrEnum):
    """Which limit keeps the gate shut."""

    SLOTS = "slots"
    MEMORY = "memory"
    DISK = "disk"
    LOAD = "load"


@dataclass(frozen=True)
class GateReading:
    """What the gate saw: available memory in MB (before any reservation), the 1-minute
    load average, and the number of running workers."""

    available_memory_mb: float
    load_1m: float
    running: int
    free_disk_mb: float | None = None  # None: not checked


@dataclass(frozen=True)
class GateDecision:
    """Whether a spawn may happen now; when not, which limit holds and one sentence why."""

    allowed: bool
    reason: str | None = None
    hold: GateHold | None = None
    reading: GateReading | None = None


class ResourceProbe(Protocol):
    """Where the gate reads the host's state; tests pass a fake."""

    def available_memory_bytes(self) -> int: ...

    def load_1m(self) -> float: ...


CGROUP_LOOKUP_SECONDS = 30.0
"""How long the probe trusts its lookup of our memory cgroup: reading ``/proc/self/cgroup``
and finding the directories took two thirds of a probe, on every spawn."""


class HostProbe:
    """The real host: psutil's ``available`` memory clamped to our cgroup, and the load average.

    ``available`` (not ``free``) counts the page cache the kernel can reclaim. Inside a
    cgroup with a memory limit, the headroom left under that limit (or under any ancestor's)
    is the real ceiling, whatever the host has to spare.
    """

    def __init__(
        self,
        *,
        cgroup_root: Path = Path("/sys/fs/cgroup"),
        proc_self_cgroup: Path = Path("/proc/self/cgroup"),
        host_available_bytes: Callable[[], int] | None = None,
        load_average: Callable[[], tuple[float, float, float]] = os.getloadavg,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cgroup_root = cgroup_root
        self._proc_self_cgroup = proc_self_cgroup
        self._host_available_bytes = host_available_bytes or _psutil_available_bytes
        self._load_average = load_average
        self._clock = clock
        self._levels: list[tuple[Path, _MemoryFiles]] | None = None
        self._levels_found_at = 0.0

    def available_memory_bytes(self) -> int:
        available = self._host_available_bytes()
        headroom = self.cgroup_headroom_bytes()
        if headroom is not None:
            available = min(available, headroom)
        return max(0, available)

    def load_1m(self) -> float:
        return self._load_average()[0]

    def cgroup_headroom_bytes(self) -> int | None:
        """Bytes left under the tightest memory limit on our cgroup or its ancestors.

        ``None`` when no limit applies or the cgroup files cannot be read: an odd cgroup
        tree must never stop the daemon, only lose the clamp. Which cgroup we are in is
        looked up again every ``CGROUP_LOOKUP_SECONDS`` (a process is rarely moved); the
        limits and the usage are read on every call.
        """
        headrooms = [files.headroom(level) for level, files in self._cgroup_levels()]
        return min((h for h in headrooms if h is not None), default=None)

    def _cgroup_levels(self) -> list[tuple[Path, _MemoryFiles]]:
        now = self._clock()
        if self._levels is None or now - self._levels_found_at >= CGROUP_LOOKUP_SECONDS:
            self._levels = self._find_levels()
            self._levels_found_at = now
        return self._levels

    def _find_levels(self) -> list[tuple[Path, _MemoryFiles]]:
        try:
            membership = self._proc_self_cgroup.read_text()
        except OSError:
            return []
        cgroup = _find_memory_cgroup(self._cgroup_root, membership)
        if cgroup is None:
            return []
        return [(level, cgroup.files) for level in cgroup.levels()]


def disk_free_probe(path: Path) -> Callable[[], int]:
    """Free bytes, for an unprivileged user, of the file system holding ``path``."""

    def free_bytes() -> int:
        return shutil.disk_usage(path).free

    return free_bytes


def _psutil_available_bytes() -> int:
    return int(psutil.virtual_memory().available)


@dataclass(frozen=True)
class _MemoryFiles:
    """Where one cgroup version keeps a memory limit, its usage, and its reclaimable cache."""

    limit: str
    usage: str
    inactive_file_key: str

    def headroom(self, directory: Path) -> int | None:
        try:
            limit_text = (directory / self.limit).read_text().strip()
            if limit_text == "max":
                return None
            limit = int(limit_text)
            if limit >= UNLIMITED_BYTES:
                return None
            usage = int((directory / self.usage).read_text())
            stat = (directory / "memory.stat").read_text()
        except (OSError, ValueError):
            return None
        # Usage counts the page cache, which the kernel reclaims before it hits the limit;
        # container tools subtract the inactive file pages for the same reason.
        return limit - max(0, usage - _stat_value(stat, self.inactive_file_key))


_V1_FILES = _MemoryFiles("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
_V2_FILES = _MemoryFiles("memory.max", "memory.current", "inactive_file")


@dataclass(frozen=True)
class _MemoryCgroup:
    mount: Path
    directory: Path
    files: _MemoryFiles

    def levels(self) -> list[Path]:
        """Our cgroup and its ancestors up to the mount: a parent's limit binds us too."""
        levels = [self.directory]
        directory = self.directory
        while directory != self.mount and self.mount in directory.parents:
            directory = directory.parent
            levels.append(directory)
        return levels


def _stat_value(stat: str, key: str) -> int:
    for line in stat.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _find_memory_cgroup(root: Path, membership: str) -> _MemoryCgroup | None:
    """Our memory cgroup from ``/proc/self/cgroup``: v1's memory controller when it is
    mounted (on hybrid hosts it owns memory), else the v2 unified tree."""
    unified: str | None = None
    for line in membership.splitlines():
        hierarchy_id, _, rest = line.partition(":")
        controllers, _, relative = rest.partition(":")
        if hierarchy_id == "0" and controllers == "":
            unified = relative
        elif "memory" in controllers.split(","):
            for mount in (root / "memory", root / controllers):
                if mount.is_dir():
                    return _MemoryCgroup(mount, _existing_dir(mount, relative), _V1_FILES)
    if unified is not None:
        for mount in (root, root / "unified"):
            if (mount / "cgroup.controllers").is_file():
                return _MemoryCgroup(mount, _existing_dir(mount, unified), _V2_FILES)
    return None


def _existing_dir(mount: Path, relative: str) -> Path:
    # In a container without its own cgroup namespace, /proc/self/cgroup names the host's
    # path while the container sees its own cgroup mounted at the root: climb until a
    # directory exists (at worst, the mount itself).
    directory = mount / relative.lstrip("/")
    while directory != mount and not directory.is_dir():
        directory = directory.parent
    return directory


class SpawnGate:
    """Decides whether the supervisor may spawn one more worker now."""

    def __init__(
        self,
        probe: ResourceProbe,
        *,
        max_workers: int,
        min_free_memory_mb: int,
        max_load: float,
        settle_seconds: float = 1.0,
        reserve_mb_per_new_worker: float = 64,
        clock: Callable[[], float] = time.monotonic,
        min_free_disk_mb: int = 0,
        disk_free_bytes: Callable[[], int] | None = None,
        disk_path: Path | None = None,
    ) -> None:
        """``disk_free_bytes`` reads the free space of the file system holding the home
        (``disk_free_probe(home)``); with ``min_free_disk_mb`` at 0 it is never read."""
        self._probe = probe
        self._min_free_disk_mb = min_free_disk_mb
        self._disk_free_bytes = disk_free_bytes
        self._disk_path = disk_path
        self._max_workers = max_workers
        self._min_free_memory_mb = min_free_memory_mb
        self._max_load = max_load
        self._settle_seconds = settle_seconds
        self._reserve_mb_per_new_worker = reserve_mb_per_new_worker
        self._clock = clock
        self._recent_spawns: deque[float] = deque()
        self._reported_hold: GateHold | None = None
        self.last_decision: GateDecision | None = None
        """The latest decision of ``check``, for ``swarmd status``."""

    def check(self, running: int) -> GateDecision:
        """May a worker start now, with ``running`` workers already running?"""
        decision = self._decide(running)
        self.last_decision = decision
        return decision

    def _decide(self, running: int) -> GateDecision:
        if running >= self._max_workers:
            return GateDecision(
                allowed=False,
                reason=f"all {self._max_workers} worker slots are busy "
                f"(SWARMD_MAX_CONCURRENT_WORKERS={self._max_workers})",
                hold=GateHold.SLOTS,
            )
        reading = self.read(running)
        memory_reason = self._memory_shortfall(reading.available_memory_mb)
        if memory_reason is not None:
            return GateDecision(False, memory_reason, GateHold.MEMORY, reading)
        disk_reason = self._disk_shortfall(reading.free_disk_mb)
        if disk_reason is not None:
            return GateDecision(False, disk_reason, GateHold.DISK, reading)
        if reading.load_1m > self._max_load:
            reason = (
                f"1-minute load average {reading.load_1m:.2f} is above "
                f"SWARMD_MAX_LOAD={self._max_load:g}"
            )
            return GateDecision(False, reason, GateHold.LOAD, reading)
        return GateDecision(allowed=True, reading=reading)

    def read(self, running: int) -> GateReading:
        """What the probe says now (for ``swarmd status`` too)."""
        available_mb = self._probe.available_memory_bytes() / MB
        disk_mb = None
        if self._min_free_disk_mb > 0 and self._disk_free_bytes is not None:
            try:
                disk_mb = self._disk_free_bytes() / MB
            except OSError:
                disk_mb = None  # a home that vanished fails its writes, not the gate
        return GateReading(available_mb, self._probe.load_1m(), running, disk_mb)

    def _disk_shortfall(self, free_mb: float | None) -> str | None:
        if free_mb is None or free_mb >= self._min_free_disk_mb:
            return None
        where = f" on the file system of {self._disk_path}" if self._disk_path else ""
        return (
            f"free disk space {free_mb:.0f} MB{where} is below "
            f"SWARMD_MIN_FREE_DISK_MB={self._min_free_disk_mb}"
        )

    def _memory_shortfall(self, available_mb: float) -> str | None:
        if self._min_free_memory_mb <= 0:
            return None
        # A worker just started has not allocated its memory yet: count what the workers
        # started within the settle window will take, so a burst cannot outrun the probe.
        settling = self._settling_count()
        reserved_mb = settling * self._reserve_mb_per_new_worker
        if available_mb - reserved_mb >= self._min_free_memory_mb:
            return None
        limit = f"SWARMD_MIN_FREE_MEMORY_MB={self._min_free_memory_mb}"
        if settling == 0:
            return f"available memory {available_mb:.0f} MB is below {limit}"
        workers = "worker" if settling == 1 else "workers"
        return (
            f"available memory {available_mb:.0f} MB, less {reserved_mb:.0f} MB reserved for "
            f"{settling} {workers} just started, is below {limit}"
        )

    def _settling_count(self) -> int:
        horizon = self._clock() - self._settle_seconds
        while self._recent_spawns and self._recent_spawns[0] <= horizon:
            self._recent_spawns.popleft()
        return len(self._recent_spawns)

    def note_spawn(self) -> None:
        """Record that a worker was just started (its memory is reserved for a while)."""
        self._recent_spawns.append(self._clock())

    def hold_changed(self) -> GateDecision | None:
        """The last decision if memory or load started or stopped holding since the last call.

        Returns a holding decision once when a hold begins (or its cause changes) and an
        allowing one once when it ends; ``None`` otherwise. Full slots are ordinary
        back-pressure, not a hold: they change nothing here.
        """
        decision = self.last_decision
        if decision is None or decision.hold is GateHold.SLOTS:
            return None
        hold = None if decision.allowed else decision.hold
        if hold == self._reported_hold:
            return None
        self._reported_hold = hold
        return decision
