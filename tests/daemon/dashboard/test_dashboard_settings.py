"""The dashboard's settings: off by default, loopback by default, a token required beyond it,
and every refusal one sentence with exit 78 (exit 3 for a port in use)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from swarmd.config import load_settings
from swarmd.errors import ConfigError
from tests.support.cli import one_sentence, swarmd_says
from tests.support.dashboard import TOKEN


@pytest.mark.parametrize(
    ("variables", "named", "says"),
    [
        (
            {"SWARMD_DASHBOARD_HOST": "0.0.0.0"},
            "SWARMD_DASHBOARD_HOST",
            "SWARMD_DASHBOARD_TOKEN must be set",
        ),
        (
            {"SWARMD_DASHBOARD_HOST": "192.168.1.20"},
            "SWARMD_DASHBOARD_HOST",
            "not a loopback address",
        ),
        (
            {"SWARMD_DASHBOARD_HOST": "dash.example.com"},
            "SWARMD_DASHBOARD_HOST",
            "must be an IP address",
        ),
        (
            {"SWARMD_DASHBOARD_TOKEN": "short-token"},
            "SWARMD_DASHBOARD_TOKEN",
            "at least 16 characters",
        ),
        (
            {"SWARMD_DASHBOARD_TOKEN": "a token with spaces!"},
            "SWARMD_DASHBOARD_TOKEN",
            "only letters",
        ),
        ({"SWARMD_DASHBOARD_PORT": "70000"}, "SWARMD_DASHBOARD_PORT", "65535"),
        ({"SWARMD_DASHBOARD_PORT": "-1"}, "SWARMD_DASHBOARD_PORT", "greater than or equal to 0"),
    ],
)
def test_run_refuses_bad_dashboard_settings_in_one_sentence_with_exit_78(
    swarmd_env: dict[str, str], variables: dict[str, str], named: str, says: str
) -> None:
    result = swarmd_says("run", env={**swarmd_env, "SWARMD_DASHBOARD_PORT": "8787", **variables})

    assert result.returncode == 78
    message = one_sentence(result.stderr)
    assert named in message and says in message
    token = variables.get("SWARMD_DASHBOARD_TOKEN")
    assert token is None or token not in message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
def test_loopback_hosts_need_no_token(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv("SWARMD_DASHBOARD_HOST", host)

    assert load_settings().dashboard_host in {"127.0.0.1", "127.0.0.53", "::1", "localhost"}


def test_any_host_may_be_bound_with_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMD_DASHBOARD_HOST", "0.0.0.0")
    monkeypatch.setenv("SWARMD_DASHBOARD_TOKEN", TOKEN)

    settings = load_settings()

    assert settings.dashboard_host == "0.0.0.0"
    assert TOKEN in settings.secrets  # so the log's redactor scrubs it too


def test_the_dashboard_is_off_unless_a_port_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not load_settings().dashboard_enabled
    monkeypatch.setenv("SWARMD_DASHBOARD_PORT", "0")
    assert not load_settings().dashboard_enabled
    monkeypatch.setenv("SWARMD_DASHBOARD_PORT", "8787")
    assert load_settings().dashboard_enabled


def test_a_non_loopback_host_without_a_token_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWARMD_DASHBOARD_HOST", "::")

    with pytest.raises(ConfigError, match="SWARMD_DASHBOARD_HOST"):
        load_settings()


def test_config_never_shows_the_token(swarmd_env: dict[str, str]) -> None:
    result = swarmd_says("config", env={**swarmd_env, "SWARMD_DASHBOARD_TOKEN": TOKEN})

    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout
    assert "SWARMD_DASHBOARD_TOKEN=****" in result.stdout


def test_a_port_in_use_stops_the_daemon_in_one_sentence_with_exit_3(
    swarmd_env: dict[str, str], home: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = swarmd_says("run", env={**swarmd_env, "SWARMD_DASHBOARD_PORT": str(port)})

    assert result.returncode == 3
    # The lines before it are the daemon's log, in JSON, as stderr is not a terminal.
    assert result.stderr.splitlines()[-1] == (
        f"swarmd: cannot serve the dashboard on 127.0.0.1:{port} (SWARMD_DASHBOARD_PORT): "
        "Address already in use"
    )
