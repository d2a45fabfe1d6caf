"""The unit file passes ``systemd-analyze verify`` with no output at all."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECK = REPO / "scripts" / "check-systemd-unit"

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_unit_file_verifies_without_a_warning() -> None:
    result = run_check()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("OK")


def test_check_fails_on_a_warning_that_systemd_analyze_exits_0_for(tmp_path: Path) -> None:
    unit = (REPO / "systemd" / "swarmd.service").read_text()
    broken = tmp_path / "swarmd.service"
    broken.write_text(unit.replace("[Service]\n", "[Service]\nRestartt=always\n"))
    result = run_check(str(broken))
    assert result.returncode == 1
    assert "Unknown key 'Restartt'" in result.stderr
