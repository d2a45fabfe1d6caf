"""A misspelled setting is named, with the closest valid name, wherever it was set.

The settings ignore a ``SWARMD_*`` variable they do not read, so
``SWARMD_MAX_CONCURENT_WORKERS=4`` once left ten workers running in silence. ``config`` and
``doctor`` now warn about it, and ``run`` warns (stderr and log) but still starts.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.support.cli import Daemon, log_events, swarmd_says

TYPO = "SWARMD_MAX_CONCURENT_WORKERS"
MEANT = "SWARMD_MAX_CONCURRENT_WORKERS"
WARNING = f"{TYPO} (in the environment) is ignored: did you mean {MEANT}?"


def test_config_warns_about_a_misspelled_variable_in_the_environment(
    swarmd_env: dict[str, str],
) -> None:
    result = swarmd_says("config", env={**swarmd_env, TYPO: "4"})

    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == f"swarmd: warning: {WARNING}"
    assert f"{MEANT}=10" in result.stdout.splitlines()


def test_config_warns_about_a_misspelled_variable_in_dot_env_of_the_current_directory(
    swarmd_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("SWARMD_LOG_LEVL=debug\nSWARMD_MAX_FIX_ROUNDS=7\n")

    result = swarmd_says("config", env=swarmd_env, cwd=tmp_path)

    assert result.stderr.strip() == (
        "swarmd: warning: SWARMD_LOG_LEVL (in .env) is ignored: did you mean SWARMD_LOG_LEVEL?"
    )
    assert "SWARMD_MAX_FIX_ROUNDS=7" in result.stdout.splitlines()


def test_a_variable_near_no_setting_is_named_without_a_guess(swarmd_env: dict[str, str]) -> None:
    result = swarmd_says("config", "--json", env={**swarmd_env, "SWARMD_ZZZ": "1"})

    assert result.stderr.strip() == (
        "swarmd: warning: SWARMD_ZZZ (in the environment) is ignored: it is not a setting"
    )
    assert "home" in json.loads(result.stdout)


def test_doctor_shows_a_misspelled_variable_as_a_warning(swarmd_env: dict[str, str]) -> None:
    result = swarmd_says("doctor", "--json", env={**swarmd_env, TYPO: "4"})

    findings = json.loads(result.stdout)
    warned = [f for f in findings if f["level"] == "warn" and TYPO in f["detail"]]
    assert [(f["check"], f["detail"], f["advice"]) for f in warned] == [
        ("settings", WARNING, f"rename it to {MEANT}")
    ]


def test_run_warns_on_stderr_and_in_the_log_and_still_starts(
    swarmd_env: dict[str, str], home: Path
) -> None:
    daemon = Daemon({**swarmd_env, TYPO: "4"}, home)
    try:
        daemon.start()  # it started: it logged supervisor_ready
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
        assert daemon.proc is not None and daemon.proc.stderr is not None
        stderr = daemon.proc.stderr.read()
    finally:
        daemon.stop()

    assert f"swarmd: warning: {WARNING}" in stderr.splitlines()
    [event] = [e for e in log_events(home) if e.get("event") == "unknown_setting"]
    assert (event["variable"], event["suggestion"], event["level"]) == (TYPO, MEANT, "warning")


def test_variables_swarmd_sets_for_command_agents_are_not_warned_about(
    swarmd_env: dict[str, str],
) -> None:
    env = {**swarmd_env, "SWARMD_TASK": "copy", "SWARMD_TICKET": "4", "swarmd_max_load": "3"}

    result = swarmd_says("config", env=env)

    assert result.stderr == ""
    assert "SWARMD_MAX_LOAD=3" in result.stdout.splitlines()
