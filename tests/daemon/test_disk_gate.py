"""The gate holds spawns while the home's file system has less free space than
``SWARMD_MIN_FREE_DISK_MB``, says so in one sentence, and releases when space comes back."""

from __future__ import annotations

from pathlib import Path

from swarmd.daemon.gate import MB, GateHold, SpawnGate, disk_free_probe
from tests.support.clock import FakeClock


class FakeProbe:
    def available_memory_bytes(self) -> int:
        return 8192 * MB

    def load_1m(self) -> float:
        return 0.1


class FakeDisk:
    def __init__(self, free_mb: float) -> None:
        self.free_mb = free_mb
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return int(self.free_mb * MB)


def disk_gate(disk: FakeDisk, min_free_disk_mb: int = 512) -> SpawnGate:
    return SpawnGate(
        FakeProbe(),
        max_workers=4,
        min_free_memory_mb=1024,
        max_load=3.0,
        clock=FakeClock(),
        min_free_disk_mb=min_free_disk_mb,
        disk_free_bytes=disk,
        disk_path=Path("/var/lib/swarmd"),
    )


def test_the_gate_holds_below_the_free_disk_limit_and_releases_above_it() -> None:
    disk = FakeDisk(free_mb=100)
    gate = disk_gate(disk)

    held = gate.check(running=0)
    assert not held.allowed
    assert held.hold is GateHold.DISK
    assert held.reason == (
        "free disk space 100 MB on the file system of /var/lib/swarmd is below "
        "SWARMD_MIN_FREE_DISK_MB=512"
    )
    assert gate.hold_changed() == held  # reported once when it begins
    assert gate.hold_changed() is None

    disk.free_mb = 600
    released = gate.check(running=0)
    assert released.allowed
    assert released.reading is not None and released.reading.free_disk_mb == 600
    assert gate.hold_changed() == released


def test_zero_turns_the_disk_check_off_and_the_disk_is_not_read() -> None:
    disk = FakeDisk(free_mb=1)
    gate = disk_gate(disk, min_free_disk_mb=0)

    assert gate.check(running=0).allowed
    assert disk.reads == 0


def test_full_slots_hold_before_the_disk_is_read() -> None:
    disk = FakeDisk(free_mb=1)

    decision = disk_gate(disk).check(running=4)

    assert decision.hold is GateHold.SLOTS
    assert disk.reads == 0


def test_a_disk_that_cannot_be_read_does_not_hold_the_gate() -> None:
    def unreadable() -> int:
        raise FileNotFoundError("gone")

    gate = SpawnGate(
        FakeProbe(),
        max_workers=4,
        min_free_memory_mb=0,
        max_load=3.0,
        min_free_disk_mb=512,
        disk_free_bytes=unreadable,
    )

    assert gate.check(running=0).allowed


def test_the_real_probe_reads_the_file_system_of_a_path(tmp_path: Path) -> None:
    assert disk_free_probe(tmp_path)() > 0


def test_the_hold_counter_starts_the_disk_at_zero_only_where_it_is_checked() -> None:
    from swarmd.daemon.metrics.collector import GateHoldCounter

    assert "disk" not in GateHoldCounter().counts()
    counter = GateHoldCounter(disk=True)
    counter.record(GateHold.DISK.value)
    assert counter.counts() == {"slots": 0, "memory": 0, "disk": 1, "load": 0}
