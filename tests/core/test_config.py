from pathlib import Path

import pytest

from swarmd.config import OFFLINE_MODEL, default_home, load_settings
from swarmd.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("SWARMD_HOME", "SWARMD_PRIMARY_MODEL", "SWARMD_FALLBACK_MODEL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_match_the_documented_contract() -> None:
    settings = load_settings(home=Path("/tmp/x"))
    assert settings.max_concurrent_workers == 10
    assert settings.min_free_memory_mb == 1024
    assert settings.shutdown_grace_seconds == 10
    assert settings.api_rate_limit_rpm == 20
    assert settings.fallback_on_rate_limit is True
    assert settings.effective_max_load == pytest.approx(1.5 * settings.usable_cpus)


def test_no_provider_means_the_offline_model() -> None:
    assert load_settings().model_chain == (OFFLINE_MODEL,)


def test_fallback_model_comma_list_makes_a_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMD_PRIMARY_MODEL", "openai/gpt-4.1-mini")
    monkeypatch.setenv("SWARMD_FALLBACK_MODEL", "anthropic/claude-sonnet-4-5, ollama/llama3.2")
    assert load_settings().model_chain == (
        "openai/gpt-4.1-mini",
        "anthropic/claude-sonnet-4-5",
        "ollama/llama3.2",
    )


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMD_MAX_CONCURRENT_WORKERS", "lots")
    with pytest.raises(ConfigError, match="SWARMD_MAX_CONCURRENT_WORKERS") as info:
        load_settings()
    assert info.value.exit_code == 78


def test_model_without_provider_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMD_PRIMARY_MODEL", "gpt-4")
    with pytest.raises(ConfigError, match=r"SWARMD_PRIMARY_MODEL.*provider/model"):
        load_settings()


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SWARMD_MAX_ATTEMPTS=7\n")
    assert load_settings().max_attempts == 7


def test_masked_settings_never_show_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-0123456789abcdefSECRET"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    shown = load_settings().masked()
    assert secret not in repr(shown)
    assert str(shown["openai_api_key"]).startswith("****")


def test_home_follows_systemd_state_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/swarmd:/var/lib/other")
    assert default_home() == Path("/var/lib/swarmd")


def test_heartbeat_follows_a_short_systemd_watchdog() -> None:
    from swarmd.daemon.serve import heartbeat_interval

    settings = load_settings()
    assert heartbeat_interval(settings, {}) == 2.0
    assert heartbeat_interval(settings, {"WATCHDOG_USEC": "1000000"}) == 0.5
    assert heartbeat_interval(settings, {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}) == 2.0
