"""The spawn gate: slots, memory and load; a reservation for workers just started; holds
reported once; the cgroup clamp read from a fake /sys tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmd.daemon.gate import (
    CGROUP_LOOKUP_SECONDS,
    MB,
    GateDecision,
    GateHold,
    HostProbe,
    SpawnGate,
)
from tests.support.clock import FakeClock


class FakeProbe:
    def __init__(self, available_mb: float = 8192, load: float = 0.5) -> None:
        self.available_mb = available_mb
        self.load = load

    def available_memory_bytes(self) -> int:
        return int(self.available_mb * MB)

    def load_1m(self) -> float:
        return self.load


def make_gate(probe: FakeProbe, clock: FakeClock | None = None, **overrides: float) -> SpawnGate:
    options: dict[str, float] = {
        "max_workers": 4,
        "min_free_memory_mb": 1024,
        "max_load": 3.0,
        "settle_seconds": 1.0,
        "reserve_mb_per_new_worker": 64,
    }
    options.update(overrides)
    return SpawnGate(probe, clock=clock or FakeClock(), **options)  # type: ignore[arg-type]


def test_gate_allows_a_spawn_within_every_limit() -> None:
    decision = make_gate(FakeProbe()).check(running=0)
    assert decision.allowed
    assert decision.reason is None


def test_gate_holds_while_memory_is_below_the_minimum() -> None:
    decision = make_gate(FakeProbe(available_mb=812)).check(running=0)
    assert not decision.allowed
    assert decision.hold is GateHold.MEMORY
    assert decision.reason == "available memory 812 MB is below SWARMD_MIN_FREE_MEMORY_MB=1024"


def test_gate_resumes_once_memory_is_back() -> None:
    probe = FakeProbe(available_mb=812)
    gate = make_gate(probe)
    assert not gate.check(running=0).allowed
    probe.available_mb = 4096
    assert gate.check(running=0).allowed


def test_gate_holds_while_load_is_above_the_maximum() -> None:
    decision = make_gate(FakeProbe(load=3.42)).check(running=0)
    assert not decision.allowed
    assert decision.hold is GateHold.LOAD
    assert decision.reason == "1-minute load average 3.42 is above SWARMD_MAX_LOAD=3"


def test_gate_resumes_once_load_is_back() -> None:
    probe = FakeProbe(load=3.42)
    gate = make_gate(probe)
    assert not gate.check(running=0).allowed
    probe.load = 2.9
    assert gate.check(running=0).allowed


def test_gate_holds_when_every_slot_is_busy() -> None:
    gate = make_gate(FakeProbe(), max_workers=4)
    assert gate.check(running=3).allowed
    decision = gate.check(running=4)
    assert decision.hold is GateHold.SLOTS
    assert decision.reason == "all 4 worker slots are busy (SWARMD_MAX_CONCURRENT_WORKERS=4)"


def test_workers_just_started_have_memory_reserved_for_them() -> None:
    gate = make_gate(FakeProbe(available_mb=1100))
    assert gate.check(running=0).allowed
    gate.note_spawn()
    assert gate.check(running=1).allowed  # 1100 - 64 >= 1024
    gate.note_spawn()
    decision = gate.check(running=2)  # 1100 - 128 < 1024
    assert decision.hold is GateHold.MEMORY
    assert decision.reason == (
        "available memory 1100 MB, less 128 MB reserved for 2 workers just started, "
        "is below SWARMD_MIN_FREE_MEMORY_MB=1024"
    )


def test_reservation_ends_once_workers_have_settled() -> None:
    clock = FakeClock()
    gate = make_gate(FakeProbe(available_mb=1100), clock, settle_seconds=1.0)
    gate.note_spawn()
    gate.note_spawn()
    assert not gate.check(running=2).allowed
    clock.now += 1.0
    assert gate.check(running=2).allowed


def test_zero_minimum_free_memory_turns_the_memory_check_off() -> None:
    gate = make_gate(FakeProbe(available_mb=0), min_free_memory_mb=0)
    assert gate.check(running=0).allowed


def test_last_decision_is_kept_for_status() -> None:
    gate = make_gate(FakeProbe(load=9))
    assert gate.last_decision is None
    decision = gate.check(running=0)
    assert gate.last_decision == decision
    assert decision.reading is not None
    assert decision.reading.load_1m == 9


def test_a_hold_is_reported_once_and_its_release_once() -> None:
    probe = FakeProbe(available_mb=500)
    gate = make_gate(probe)
    reports: list[GateDecision | None] = []
    for available in (500, 400, 450, 4096, 4096, 4000):
        probe.available_mb = available
        gate.check(running=0)
        reports.append(gate.hold_changed())
    held, *quiet_while_held, released = reports[:4]
    assert held is not None and held.hold is GateHold.MEMORY
    assert quiet_while_held == [None, None]
    assert released is not None and released.allowed
    assert reports[4:] == [None, None]


def test_a_hold_that_changes_cause_is_reported_again() -> None:
    probe = FakeProbe(available_mb=500, load=9)
    gate = make_gate(probe)
    gate.check(running=0)
    first = gate.hold_changed()
    probe.available_mb = 4096
    gate.check(running=0)
    second = gate.hold_changed()
    assert first is not None and first.hold is GateHold.MEMORY
    assert second is not None and second.hold is GateHold.LOAD


def test_full_slots_neither_report_nor_end_a_hold() -> None:
    gate = make_gate(FakeProbe(available_mb=500), max_workers=2)
    gate.check(running=0)
    assert gate.hold_changed() is not None
    gate.check(running=2)
    assert gate.hold_changed() is None
    gate.check(running=1)
    assert gate.hold_changed() is None  # still the same memory hold


def test_nothing_to_report_before_the_first_check() -> None:
    assert make_gate(FakeProbe()).hold_changed() is None


# --- the host probe, on a fake /sys/fs/cgroup and /proc/self/cgroup ---

HOST_AVAILABLE = 8 * 1024 * MB


def write_files(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)


def host_probe(tmp_path: Path, membership: str) -> HostProbe:
    (tmp_path / "proc-self-cgroup").write_text(membership)
    return HostProbe(
        cgroup_root=tmp_path / "cgroup",
        proc_self_cgroup=tmp_path / "proc-self-cgroup",
        host_available_bytes=lambda: HOST_AVAILABLE,
        load_average=lambda: (1.25, 1.0, 0.75),
    )


def cgroup_v2(tmp_path: Path, path: str, **files: str) -> Path:
    root = tmp_path / "cgroup"
    write_files(root, {"cgroup.controllers": "cpu memory pids\n"})
    directory = root / path
    write_files(directory, {name.replace("_", "."): text for name, text in files.items()})
    return directory


def test_cgroup_v2_limit_clamps_available_memory(tmp_path: Path) -> None:
    cgroup_v2(
        tmp_path,
        "system.slice/swarmd.service",
        memory_max=str(1024 * MB),
        memory_current=str(600 * MB),
        memory_stat=f"anon {400 * MB}\nfile {200 * MB}\ninactive_file {100 * MB}\n",
    )
    probe = host_probe(tmp_path, "0::/system.slice/swarmd.service\n")
    # 1024 MB limit - (600 MB used - 100 MB reclaimable cache)
    assert probe.available_memory_bytes() == 524 * MB


def test_cgroup_v2_without_a_limit_leaves_host_memory(tmp_path: Path) -> None:
    cgroup_v2(tmp_path, "user.slice", memory_max="max\n", memory_current="1", memory_stat="")
    probe = host_probe(tmp_path, "0::/user.slice\n")
    assert probe.available_memory_bytes() == HOST_AVAILABLE


def test_cgroup_v2_limit_of_an_ancestor_applies(tmp_path: Path) -> None:
    cgroup_v2(
        tmp_path,
        "system.slice/swarmd.service",
        memory_max=str(2048 * MB),
        memory_current=str(1900 * MB),
        memory_stat="",
    )
    cgroup_v2(
        tmp_path,
        "system.slice/swarmd.service/supervisor",
        memory_max="max",
        memory_current=str(100 * MB),
        memory_stat="",
    )
    probe = host_probe(tmp_path, "0::/system.slice/swarmd.service/supervisor\n")
    assert probe.available_memory_bytes() == 148 * MB


def test_host_memory_wins_when_it_is_tighter_than_the_cgroup(tmp_path: Path) -> None:
    cgroup_v2(tmp_path, "big", memory_max=str(64 * 1024 * MB), memory_current="0", memory_stat="")
    probe = host_probe(tmp_path, "0::/big\n")
    assert probe.available_memory_bytes() == HOST_AVAILABLE


def test_cgroup_v1_limit_clamps_available_memory(tmp_path: Path) -> None:
    write_files(
        tmp_path / "cgroup" / "memory" / "docker" / "abc",
        {
            "memory.limit_in_bytes": str(512 * MB),
            "memory.usage_in_bytes": str(300 * MB),
            "memory.stat": f"cache {80 * MB}\ntotal_inactive_file {50 * MB}\n",
        },
    )
    write_files(tmp_path / "cgroup" / "unified", {"cgroup.controllers": ""})
    membership = "12:pids:/docker/abc\n4:memory:/docker/abc\n0::/docker/abc\n"
    probe = host_probe(tmp_path, membership)
    assert probe.available_memory_bytes() == (512 - 250) * MB


def test_cgroup_v1_unlimited_value_leaves_host_memory(tmp_path: Path) -> None:
    write_files(
        tmp_path / "cgroup" / "memory" / "user",
        {
            "memory.limit_in_bytes": "9223372036854771712\n",
            "memory.usage_in_bytes": str(300 * MB),
            "memory.stat": "",
        },
    )
    probe = host_probe(tmp_path, "4:memory:/user\n")
    assert probe.available_memory_bytes() == HOST_AVAILABLE


def test_container_without_a_cgroup_namespace_reads_its_mounted_cgroup(tmp_path: Path) -> None:
    # /proc/self/cgroup names the host's path; the container has its own cgroup at the root.
    write_files(
        tmp_path / "cgroup",
        {
            "cgroup.controllers": "memory\n",
            "memory.max": str(256 * MB),
            "memory.current": str(56 * MB),
            "memory.stat": "",
        },
    )
    probe = host_probe(tmp_path, "0::/kubepods/pod123/container456\n")
    assert probe.available_memory_bytes() == 200 * MB


def test_the_cgroup_is_looked_up_again_after_a_while_and_its_limit_read_every_time(
    tmp_path: Path,
) -> None:
    for name, limit in (("a", 1024), ("b", 512)):
        cgroup_v2(tmp_path, name, memory_max=str(limit * MB), memory_current="0", memory_stat="")
    (tmp_path / "proc-self-cgroup").write_text("0::/a\n")
    now = [0.0]
    probe = HostProbe(
        cgroup_root=tmp_path / "cgroup",
        proc_self_cgroup=tmp_path / "proc-self-cgroup",
        host_available_bytes=lambda: HOST_AVAILABLE,
        clock=lambda: now[0],
    )
    assert probe.available_memory_bytes() == 1024 * MB
    (tmp_path / "cgroup" / "a" / "memory.max").write_text(str(768 * MB))
    (tmp_path / "proc-self-cgroup").write_text("0::/b\n")  # moved to another cgroup
    now[0] = CGROUP_LOOKUP_SECONDS - 1
    assert probe.available_memory_bytes() == 768 * MB  # the same cgroup, its new limit
    now[0] = CGROUP_LOOKUP_SECONDS
    assert probe.available_memory_bytes() == 512 * MB


def test_unreadable_cgroup_information_leaves_host_memory(tmp_path: Path) -> None:
    probe = HostProbe(
        cgroup_root=tmp_path / "nothing",
        proc_self_cgroup=tmp_path / "missing",
        host_available_bytes=lambda: HOST_AVAILABLE,
    )
    assert probe.available_memory_bytes() == HOST_AVAILABLE


def test_garbled_cgroup_limit_is_ignored(tmp_path: Path) -> None:
    cgroup_v2(tmp_path, "odd", memory_max="lots", memory_current="0", memory_stat="")
    probe = host_probe(tmp_path, "0::/odd\n")
    assert probe.available_memory_bytes() == HOST_AVAILABLE


def test_memory_over_the_cgroup_limit_reads_as_none_available(tmp_path: Path) -> None:
    cgroup_v2(
        tmp_path, "full", memory_max=str(100 * MB), memory_current=str(120 * MB), memory_stat=""
    )
    probe = host_probe(tmp_path, "0::/full\n")
    assert probe.available_memory_bytes() == 0


def test_host_probe_reads_the_one_minute_load(tmp_path: Path) -> None:
    assert host_probe(tmp_path, "").load_1m() == 1.25


@pytest.mark.skipif(not Path("/proc/self/cgroup").exists(), reason="Linux /proc")
def test_host_probe_reads_this_host() -> None:
    probe = HostProbe()
    assert probe.available_memory_bytes() > 0
    assert probe.load_1m() >= 0.0
