import os
from pathlib import Path

import pytest

from swarmd.config import OFFLINE_MODEL, default_home, load_settings
from swarmd.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("SWARMD_HOME", "SWARMD_PRIMARY_MODEL", "SWARMD_FALLBACK_MODEL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "MINIMAX_BASE_URL", "OLLAMA_HOST"):
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


# -- hostile values ---------------------------------------------------------------------------

FLOAT_VARIABLES = [
    "SWARMD_MAX_LOAD",
    "SWARMD_WORKER_TIMEOUT_SECONDS",
    "SWARMD_WORKER_HEARTBEAT_SECONDS",
    "SWARMD_WORKER_HUNG_SECONDS",
    "SWARMD_SHUTDOWN_GRACE_SECONDS",
    "SWARMD_SPAWN_SETTLE_SECONDS",
    "SWARMD_LLM_REQUEST_TIMEOUT_SECONDS",
    "SWARMD_RETRY_BACKOFF_SECONDS",
    "SWARMD_RETRY_BACKOFF_MAX_SECONDS",
]


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999", "Infinity"])
@pytest.mark.parametrize("variable", FLOAT_VARIABLES)
def test_float_setting_refuses_what_is_not_a_finite_number(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith(f"invalid setting {variable}: ")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SWARMD_SHUTDOWN_GRACE_SECONDS", "86400"),
        ("SWARMD_WORKER_TIMEOUT_SECONDS", "1e300"),
        ("SWARMD_WORKER_MEMORY_LIMIT_MB", str(2**64)),
        ("SWARMD_API_RATE_LIMIT_RPM", str(10**30)),
        ("SWARMD_LOG_MAX_BYTES", str(2**80)),
    ],
)
def test_numbers_past_their_sane_bound_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"^invalid setting {variable}: must be less than"):
        load_settings()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("not json", 'must be JSON like {"provider/model": [input, output]}'),
        ('{"a/b": [1, "x"]}', 'entry ["a/b"][1] must be a valid number'),
        ('{"a/b": [1e999, 1]}', 'entry ["a/b"][0] must be a finite number'),
        ('{"a/b": [-1, 1]}', "must be greater than or equal to 0"),
        ("[" * 100_000, "must be JSON like"),
    ],
    ids=["not-json", "not-a-number", "infinite", "negative", "nested-100k"],
)
def test_model_prices_that_are_not_prices_are_a_config_error(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    monkeypatch.setenv("SWARMD_MODEL_PRICES", value)
    with pytest.raises(ConfigError, match=r"^invalid setting SWARMD_MODEL_PRICES: ") as caught:
        load_settings()
    assert expected in str(caught.value)


def test_dotenv_that_is_not_utf8_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"SWARMD_MAX_ATTEMPTS=4\nSWARMD_LOG_LEVEL=\xff\xfe\n")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == (
        f"cannot read settings from {tmp_path / '.env'}: not valid UTF-8 (byte 0xff on line 2)"
    )


@pytest.mark.timeout(10)
def test_dotenv_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / ".env")
    with pytest.raises(ConfigError, match=r"\.env: it is not a regular file"):
        load_settings()


def test_dotenv_over_a_mebibyte_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"# padding\n" * 200_000)
    with pytest.raises(ConfigError, match="over 1 MiB"):
        load_settings()


def test_dotenv_directory_is_no_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").mkdir()  # a virtualenv named .env
    assert load_settings().max_attempts == 3


def test_home_expands_the_tilde(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("SWARMD_HOME", "~/swarm")
    assert load_settings().home == tmp_path / "user" / "swarm"
    assert not (tmp_path / "~").exists()


def test_empty_home_is_the_default_home_not_the_current_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("SWARMD_HOME", "")
    assert load_settings().home == tmp_path / "user" / ".local" / "state" / "swarmd"


def test_relative_home_is_resolved_against_the_current_directory_at_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SWARMD_HOME", "state/swarmd")
    settings = load_settings()
    monkeypatch.chdir("/")
    assert settings.home == tmp_path / "state" / "swarmd"
    assert settings.layout.database == tmp_path / "state" / "swarmd" / "swarmd.db"


def test_home_of_an_unknown_user_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMD_HOME", "~no-such-user-swarmd/x")
    with pytest.raises(ConfigError, match=r"^invalid setting SWARMD_HOME: .*names no known user"):
        load_settings()


def test_relative_user_home_without_swarmd_home_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "relative/home")
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match=r'^\$HOME is "relative/home", not an absolute path'):
        load_settings()


BASE_URL_VARIABLES = ["OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "MINIMAX_BASE_URL"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("http://127.0.0.1:99999/v1", "has no valid port (1-65535)"),
        ("http://127.0.0.1:0/v1", "has no valid port (1-65535)"),
        ("http://127.0.0.1:/v1", "has no valid port (1-65535)"),
        ("http://host:port/v1", "has no valid port (1-65535)"),
        ("localhost:8080/v1", "must be an http:// or https:// URL"),
        ("ftp://example.com/v1", "must be an http:// or https:// URL"),
        ("http://[::1/v1", "is not a valid URL"),
        ("http:///v1", "must be an http:// or https:// URL"),
        ("https://example.com/v1?key=x", "must not have a query or a fragment"),
        ("https://exa mple.com/v1", "must be a URL without spaces or control characters"),
        ("https://example.com/v1\n", "must be a URL without spaces or control characters"),
    ],
)
@pytest.mark.parametrize("variable", BASE_URL_VARIABLES)
def test_bad_base_url_names_the_variable_the_user_set(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.split(":", 1)[0] == f"invalid setting {variable}"
    assert problem in message


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        ("localhost", "http://localhost:11434"),
        ("gpu-box:8080", "http://gpu-box:8080"),
        ("0.0.0.0", "http://0.0.0.0:11434"),
        ("::1", "http://[::1]:11434"),
        ("[::1]:11434", "http://[::1]:11434"),
        ("[::1]", "http://[::1]:11434"),
        ("http://gpu-box", "http://gpu-box"),
        ("http://gpu-box:11434/", "http://gpu-box:11434"),
        ("https://ollama.example.com", "https://ollama.example.com"),
        ("https://ollama.example.com/proxy/", "https://ollama.example.com/proxy"),
        ("http://[fe80::1%25eth0]:11434", "http://[fe80::1%25eth0]:11434"),
        ('"127.0.0.1:11434"', "http://127.0.0.1:11434"),
        (":8080", "http://127.0.0.1:8080"),
    ],
)
def test_ollama_host_takes_what_ollama_takes_and_the_router_agrees(
    monkeypatch: pytest.MonkeyPatch, value: str, normalised: str
) -> None:
    from swarmd.llm.provider_config import ollama_base_url

    monkeypatch.setenv("OLLAMA_HOST", value)
    host = load_settings().ollama_host
    assert host == normalised
    assert ollama_base_url(host) == ollama_base_url(normalised) == normalised + "/v1" or (
        ollama_base_url(host) == "http://127.0.0.1:11434/v1"  # a listen address
    )
    assert ollama_base_url(host) == ollama_base_url(value.strip('"'))


@pytest.mark.parametrize(
    "value",
    [
        "http://[::1",
        "host:notaport",
        "host:99999",
        "host:0",
        "ftp://host",
        "a b",
        "::1::2:zz",
        "http://u:pw@host",
    ],
)
def test_bad_ollama_host_is_a_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).split(":", 1)[0] == "invalid setting OLLAMA_HOST"


@pytest.mark.parametrize(
    "key", ["sk-abc\ndef0123456789", "sk-abc def0123456789", "sk-abc\u2026def0123456789"]
)
def test_api_key_that_cannot_be_sent_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", key)
    with pytest.raises(ConfigError, match=r"^invalid setting OPENAI_API_KEY: the key holds U\+"):
        load_settings()
    try:
        load_settings()
    except ConfigError as exc:
        assert "def0123456789" not in str(exc)


def test_password_in_a_base_url_is_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "https://user:hunter2@proxy.example:99999/v1")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)
    assert '"https://****@proxy.example:99999/v1" has no valid port' in str(caught.value)


def test_setting_value_is_quoted_and_shortened_in_the_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWARMD_LOG_LEVEL", "\u202e" + "x" * 10_000)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\u202e" not in message and len(message) < 300
    assert 'not "\\u202exxx' in message
