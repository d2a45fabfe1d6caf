"""What an operator of a fleet meets: status, doctor, config, backup, a bad URL, and secrets.

The database URL carries a password (the test server trusts every local connection, so any
password is accepted): it must never appear in anything swarmd prints or writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import Daemon, cli_env, one_sentence, swarmd_says, wait_until

PASSWORD = "s3cret-fleet-pass"

pytestmark = pytest.mark.timeout(180)


def with_password(url: str) -> str:
    return url.replace("postgresql://swarmd@", f"postgresql://swarmd:{PASSWORD}@")


def fleet_env(home: Path, url: str) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {**cli_env(home), "SWARMD_DATABASE_URL": with_password(url)}


def everything_written(*homes: Path) -> str:
    texts = []
    for home in homes:
        for path in home.rglob("*"):
            if path.is_file():
                texts.append(path.read_text(errors="replace"))
        stderr = home.with_name(home.name + ".stderr")
        if stderr.exists():
            texts.append(stderr.read_text(errors="replace"))
    return "\n".join(texts)


def test_status_shows_every_daemon_of_the_fleet(tmp_path: Path, postgres_url: str) -> None:
    homes = [tmp_path / "a", tmp_path / "b"]
    daemons = [Daemon(fleet_env(home, postgres_url), home, stderr_to_file=True) for home in homes]
    try:
        for daemon in daemons:
            daemon.start()
        env = daemons[0].env

        def fleet_of_two() -> list[dict[str, object]] | None:
            result = swarmd_says("status", "--json", env=env)
            fleet = json.loads(result.stdout).get("fleet", [])
            return fleet if len(fleet) == 2 else None

        fleet = wait_until(fleet_of_two, timeout=30)
        assert {member["home"] for member in fleet} == {str(home) for home in homes}
        shown = swarmd_says("status", env=env)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.count("fleet: ") == 2
        assert "****" in json.dumps(json.loads(swarmd_says("status", "--json", env=env).stdout))
        doctor = swarmd_says("doctor", env=env)
        assert "PostgreSQL" in doctor.stdout and "schema version" in doctor.stdout
        config = swarmd_says("config", env=env)
        assert "SWARMD_DATABASE_URL" in config.stdout
        outputs = shown.stdout + shown.stderr + doctor.stdout + doctor.stderr + config.stdout
    finally:
        for daemon in daemons:
            daemon.stop()
    assert PASSWORD not in outputs
    assert PASSWORD not in everything_written(*homes)


def test_backup_and_restore_point_to_postgres_tools(tmp_path: Path, postgres_url: str) -> None:
    env = fleet_env(tmp_path / "home", postgres_url)
    for verb in ("backup", "restore"):
        result = swarmd_says(verb, str(tmp_path / "copy.db"), env=env)
        assert result.returncode == 2
        message = one_sentence(result.stderr)
        assert "pg_dump" in message and PASSWORD not in message


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://root:{PASSWORD}@127.0.0.1/queue",
        f"postgresql://swarmd:{PASSWORD}@127.0.0.1:99999/queue",
        f"postgresql://swarmd:{PASSWORD}@127.0.0.1:5432",
    ],
)
def test_a_bad_database_url_is_one_sentence_without_its_password(tmp_path: Path, url: str) -> None:
    env = {**cli_env(tmp_path / "home"), "SWARMD_DATABASE_URL": url}
    result = swarmd_says("status", env=env)
    assert result.returncode == 78
    message = one_sentence(result.stderr)
    assert "SWARMD_DATABASE_URL" in message and PASSWORD not in message


def test_an_unreachable_database_is_one_sentence_without_its_password(tmp_path: Path) -> None:
    env = {
        **cli_env(tmp_path / "home"),
        "SWARMD_DATABASE_URL": f"postgresql://swarmd:{PASSWORD}@127.0.0.1:1/queue",
    }
    result = swarmd_says("tickets", env=env)
    assert result.returncode == 3
    message = one_sentence(result.stderr)
    assert "cannot use the database" in message and PASSWORD not in message
