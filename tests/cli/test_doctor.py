"""``swarmd doctor``: one line per check, exit 1 on any failure, keys never shown."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from swarmd.cli.doctor import (
    DoctorOptions,
    Finding,
    Level,
    check_disk,
    check_home,
    check_systemd_unit,
    diagnose,
)
from swarmd.config import load_settings
from tests.support.cli import swarmd

OPENAI_KEY = "doctorOpenAIkey-Xq8WvB2nLp4"
ANTHROPIC_KEY = "doctorAnthropicKey-Rt6YhM3kZs9"
GOOD_UNIT = """\
[Unit]
Description=swarmd

[Service]
Type=notify
ExecStart=/bin/true
"""


class ModelListing(BaseHTTPRequestHandler):
    """Answers GET /v1/models like OpenAI and Anthropic: 200 with the right key, else 401."""

    def do_GET(self) -> None:
        accepted = (
            self.headers.get("authorization") == f"Bearer {OPENAI_KEY}"
            or self.headers.get("x-api-key") == ANTHROPIC_KEY
        )
        body: dict[str, object]
        if self.path != "/v1/models":
            status, body = 404, {"error": "no route"}
        elif accepted:
            status, body = 200, {"data": [{"id": "m"}]}
        else:
            # Some providers echo what they were sent; the doctor must not pass it on.
            sent = self.headers.get("authorization") or self.headers.get("x-api-key")
            status, body = 401, {"error": {"message": f"invalid key {sent}"}}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def provider_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ModelListing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, home: Path, tmp_path: Path) -> Path:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "MINIMAX_API_KEY", "OLLAMA_HOST"):
        monkeypatch.delenv(name, raising=False)
    for name in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "MINIMAX_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SWARMD_HOME", str(home))
    monkeypatch.chdir(tmp_path)  # away from any .env
    return home


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def test_doctor_prints_a_line_per_check_and_exits_1_on_a_broken_database(
    swarmd_env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    (home / "swarmd.db").write_bytes(b"this is no database" * 1000)

    result = swarmd("doctor", env=swarmd_env, cwd=tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    checks = [line.split()[1] for line in lines]
    assert checks == [
        "settings",
        "home",
        "disk",
        "database",
        "agents",
        "providers",
        "systemd",
        "daemon",
    ]
    assert all(line.split()[0] in ("ok", "warn", "fail") for line in lines)
    database = lines[checks.index("database")]
    assert database.startswith("fail") and "swarmd restore" in database


def test_doctor_exits_0_on_a_healthy_home_and_reports_json(
    swarmd_env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    submitted = swarmd("submit", str(write_echo_ticket(tmp_path)), env=swarmd_env, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr

    result = swarmd("doctor", "--json", env=swarmd_env, cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    found = {f["check"]: f for f in json.loads(result.stdout)}
    assert found["database"]["level"] == "ok"
    assert "1 ticket, 1 task" in found["database"]["detail"]
    assert found["daemon"]["level"] == "warn"


def write_echo_ticket(directory: Path) -> Path:
    path = directory / "ticket.json"
    path.write_text(json.dumps({"title": "t", "tasks": [{"name": "a", "prompt": "hi"}]}))
    return path


def test_providers_are_contacted_only_when_asked_and_keys_never_shown(
    swarmd_env: dict[str, str], tmp_path: Path, provider_url: str
) -> None:
    env = {
        **swarmd_env,
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": f"{provider_url}/v1",
        "ANTHROPIC_API_KEY": "wrong-" + ANTHROPIC_KEY,
        "ANTHROPIC_BASE_URL": provider_url,
        "SWARMD_PRIMARY_MODEL": "openai/gpt-x",
        "SWARMD_FALLBACK_MODEL": "anthropic/claude-y",
    }

    quiet = swarmd("doctor", env=env, cwd=tmp_path)
    checked = swarmd("doctor", "--providers", env=env, cwd=tmp_path)

    assert "not contacted" in quiet.stdout
    lines = {line.split()[2]: line for line in checked.stdout.splitlines() if "provider " in line}
    assert lines["openai"].startswith("ok") and "key accepted" in lines["openai"]
    assert lines["anthropic"].startswith("fail") and "refused the key" in lines["anthropic"]
    assert "ANTHROPIC_API_KEY" in lines["anthropic"]
    assert checked.returncode == 1
    for output in (quiet.stdout + quiet.stderr, checked.stdout + checked.stderr):
        assert OPENAI_KEY not in output and ANTHROPIC_KEY not in output


async def test_unreachable_provider_fails_with_what_to_check(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # the discard port: closed
    monkeypatch.setenv("SWARMD_PRIMARY_MODEL", "openai/gpt-x")

    found = by_check(await diagnose(load_settings, DoctorOptions(providers=True)))

    assert found["provider openai"].level is Level.FAIL
    assert "unreachable" in found["provider openai"].detail
    assert "OPENAI_BASE_URL" in (found["provider openai"].advice or "")


async def test_invalid_settings_fail_the_first_check(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWARMD_MAX_CONCURRENT_WORKERS", "zero")

    findings = await diagnose(load_settings)

    assert findings[0].check == "settings" and findings[0].level is Level.FAIL
    assert "SWARMD_MAX_CONCURRENT_WORKERS" in findings[0].detail


@pytest.mark.parametrize(
    ("free", "level"),
    [(50 * 2**20, Level.FAIL), (500 * 2**20, Level.WARN), (5 * 2**30, Level.OK)],
)
def test_free_disk_thresholds(tmp_path: Path, free: int, level: Level) -> None:
    finding = check_disk(tmp_path, lambda _: (10 * 2**30, 0, free))

    assert finding.level is level


def test_world_writable_home_fails(tmp_path: Path) -> None:
    tmp_path.chmod(0o777)

    finding = check_home(tmp_path)

    assert finding.level is Level.FAIL and "chmod o-w" in (finding.advice or "")


def test_missing_home_is_a_warning(tmp_path: Path) -> None:
    assert check_home(tmp_path / "not-yet").level is Level.WARN


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@needs_systemd_analyze
def test_installed_unit_that_verifies_cleanly_is_ok(tmp_path: Path) -> None:
    unit = tmp_path / "swarmd.service"
    unit.write_text(GOOD_UNIT)

    assert check_systemd_unit(unit).level is Level.OK


@needs_systemd_analyze
def test_installed_unit_with_a_warning_is_reported(tmp_path: Path) -> None:
    unit = tmp_path / "swarmd.service"
    unit.write_text(GOOD_UNIT.replace("[Service]\n", "[Service]\nRestartt=always\n"))

    finding = check_systemd_unit(unit)

    assert finding.level is not Level.OK
    assert "Restartt" in finding.detail


def test_no_installed_unit_is_fine(tmp_path: Path) -> None:
    assert check_systemd_unit(tmp_path / "swarmd.service").level is Level.OK


def test_diagnose_runs_every_check_in_order(clean_env: Path) -> None:
    findings = asyncio.run(
        diagnose(load_settings, DoctorOptions(systemd_unit=clean_env / "none.service"))
    )

    assert [f.check for f in findings] == [
        "settings",
        "home",
        "disk",
        "database",
        "agents",
        "providers",
        "systemd",
        "daemon",
    ]
