"""Hostile settings: every command refuses them with exit 78 and one sentence naming the
variable the user set, before anything is written."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.support.hostile import (
    SETTINGS,
    Batch,
    Outcome,
    Sandbox,
    assert_clean,
    assert_refused,
    batch_fixture,
)

# Every float setting is checked in tests/unit/test_config.py; here, one of each use.
FLOAT_VARIABLES = [
    "SWARMD_MAX_LOAD",
    "SWARMD_WORKER_TIMEOUT_SECONDS",
    "SWARMD_SHUTDOWN_GRACE_SECONDS",
    "SWARMD_LLM_REQUEST_TIMEOUT_SECONDS",
]

HOSTILE_VALUES: dict[str, tuple[str, str, str]] = {
    # case: (variable, value, what the sentence says)
    **{
        f"{name.removeprefix('SWARMD_').lower()}-inf": (name, "inf", "must be a finite number")
        for name in FLOAT_VARIABLES
    },
    "grace-nan": ("SWARMD_SHUTDOWN_GRACE_SECONDS", "nan", "must be a finite number"),
    "grace-1e999": ("SWARMD_SHUTDOWN_GRACE_SECONDS", "1e999", "must be a finite number"),
    "grace-a-day": ("SWARMD_SHUTDOWN_GRACE_SECONDS", "86400", "must be less than or equal to 3600"),
    "max-load-minus-inf": ("SWARMD_MAX_LOAD", "-inf", "must be a finite number"),
    "workers-past-int64": ("SWARMD_MAX_CONCURRENT_WORKERS", str(2**64), "must be less than"),
    "memory-limit-2**64": ("SWARMD_WORKER_MEMORY_LIMIT_MB", str(2**64), "must be less than"),
    "model-prices-not-json": ("SWARMD_MODEL_PRICES", "not json", "must be JSON like"),
    "model-prices-infinite": ("SWARMD_MODEL_PRICES", '{"a/b": [1e999, 1]}', "finite number"),
    "model-prices-nested-100k": ("SWARMD_MODEL_PRICES", "[" * 100_000, "must be JSON like"),
    "openai-base-url-bad-port": (
        "OPENAI_BASE_URL",
        "http://127.0.0.1:99999/v1",
        "has no valid port (1-65535)",
    ),
    "openai-base-url-without-scheme": (
        "OPENAI_BASE_URL",
        "localhost:8080/v1",
        "must be an http:// or https:// URL",
    ),
    "anthropic-base-url-unclosed-bracket": ("ANTHROPIC_BASE_URL", "http://[::1", "not a valid URL"),
    "minimax-base-url-with-query": (
        "MINIMAX_BASE_URL",
        "https://api.minimax.io/v1?x=1",
        "must not have a query",
    ),
    "ollama-host-unclosed-bracket": ("OLLAMA_HOST", "http://[::1", "unclosed or misplaced ["),
    "ollama-host-not-a-port": ("OLLAMA_HOST", "host:notaport", 'invalid port "notaport"'),
    "ollama-host-ftp": ("OLLAMA_HOST", "ftp://host", "must be host[:port] or an http://"),
    "home-of-unknown-user": ("SWARMD_HOME", "~no-such-user-swarmd/x", "names no known user"),
    "log-level-with-bidi": ("SWARMD_LOG_LEVEL", "info\u202e", 'critical, not "info\\u202e"'),
    "fallback-with-escape": ("SWARMD_FALLBACK_MODEL", "a/b,\x1b[2J/c", '"\\u001b[2J/c"'),
    "aliases-without-equals": ("SWARMD_MODEL_ALIASES", "codex", '"codex" is not alias=provider'),
    "worker-start-thread": ("SWARMD_WORKER_START", "thread", "must be 'fork' or 'exec'"),
    "api-key-with-newline": ("OPENAI_API_KEY", "sk-one\nsk-two", "the key holds U+000A"),
    "api-key-with-ellipsis": ("ANTHROPIC_API_KEY", "sk-ant-\u2026", "the key holds U+2026"),
}


def _submit_with(case: str) -> Callable[[Sandbox], Outcome]:
    variable, value, _ = HOSTILE_VALUES[case]

    def run(box: Sandbox) -> Outcome:
        path = box.ticket({"title": "t", "prompt": "p"})
        return box.run("submit", str(path), env=box.env(**{variable: value}))

    return run


hostile_settings = batch_fixture(
    "hostile_settings", {case: _submit_with(case) for case in HOSTILE_VALUES}
)


@pytest.mark.parametrize("case", sorted(HOSTILE_VALUES))
def test_hostile_setting_stops_the_command_with_exit_78(hostile_settings: Batch, case: str) -> None:
    variable, value, fragment = HOSTILE_VALUES[case]
    box, outcome = hostile_settings.outcome(case)
    sentence = assert_refused(outcome, SETTINGS, fragment)
    assert sentence.startswith(f"swarmd: invalid setting {variable}: "), sentence
    if "KEY" in variable:
        assert value not in outcome.output  # a secret is never shown
    assert not box.home.exists()


@pytest.mark.parametrize("value", ["inf", "nan"], ids=["grace-inf", "grace-nan"])
def test_daemon_refuses_an_infinite_grace_with_ex_config(sandbox: Sandbox, value: str) -> None:
    env = sandbox.env(SWARMD_SHUTDOWN_GRACE_SECONDS=value)
    outcome = sandbox.run("run", env=env, timeout=20)
    assert_refused(outcome, SETTINGS, "invalid setting SWARMD_SHUTDOWN_GRACE_SECONDS")
    assert not sandbox.home.exists()


DOTENV_FILES: dict[str, tuple[bytes | None, str]] = {
    "not-utf8": (b"SWARMD_MAX_ATTEMPTS=4\nSWARMD_LOG_LEVEL=\xff\xfe\n", "not valid UTF-8 (byte"),
    "latin1": ("SWARMD_PRIMARY_MODEL=openai/caf\u00e9\n".encode("latin-1"), "not valid UTF-8"),
    "over-a-mebibyte": (b"# padding\n" * 200_000, "it is over 1 MiB"),
    "fifo": (None, "it is not a regular file"),
}


@pytest.mark.parametrize("case", sorted(DOTENV_FILES))
def test_hostile_dotenv_is_refused_naming_the_file(sandbox: Sandbox, case: str) -> None:
    data, fragment = DOTENV_FILES[case]
    if data is None:
        os.mkfifo(sandbox.cwd / ".env")
    else:
        (sandbox.cwd / ".env").write_bytes(data)
    outcome = sandbox.run("config", timeout=15)
    assert_refused(outcome, SETTINGS, f"cannot read settings from {sandbox.cwd / '.env'}", fragment)
    assert outcome.seconds < 10


def test_dotenv_value_with_a_nul_is_refused(sandbox: Sandbox) -> None:
    (sandbox.cwd / ".env").write_bytes(b"SWARMD_AGENTS_FILE=/tmp/a\x00b\n")
    outcome = sandbox.run("config")
    assert_refused(outcome, SETTINGS, "invalid setting SWARMD_AGENTS_FILE: must not hold a NUL")


def test_dotenv_directory_such_as_a_virtualenv_is_no_dotenv(sandbox: Sandbox) -> None:
    (sandbox.cwd / ".env" / "bin").mkdir(parents=True)
    outcome = sandbox.run("config")
    assert outcome.returncode == 0, outcome.describe()
    assert_clean(outcome)


# -- homes ---------------------------------------------------------------------------------------


def test_home_with_a_tilde_lands_in_the_users_home(sandbox: Sandbox) -> None:
    path = sandbox.ticket({"title": "t", "prompt": "p"})
    outcome = sandbox.run("submit", str(path), env=sandbox.env(SWARMD_HOME="~/swarm"))
    assert outcome.returncode == 0, outcome.describe()
    assert (sandbox.user_home / "swarm" / "swarmd.db").exists()
    assert not (sandbox.cwd / "~").exists()
    assert sandbox.snapshot() >= {"user/swarm/swarmd.db"}


def test_empty_home_is_the_default_home_never_the_current_directory(sandbox: Sandbox) -> None:
    path = sandbox.ticket({"title": "t", "prompt": "p"})
    outcome = sandbox.run("submit", str(path), env=sandbox.env(SWARMD_HOME=""))
    assert outcome.returncode == 0, outcome.describe()
    assert (sandbox.user_home / ".local" / "state" / "swarmd" / "swarmd.db").exists()
    assert list(sandbox.cwd.iterdir()) == []


def test_relative_home_is_taken_from_the_current_directory(sandbox: Sandbox) -> None:
    path = sandbox.ticket({"title": "t", "prompt": "p"})
    outcome = sandbox.run("submit", str(path), env=sandbox.env(SWARMD_HOME="state"))
    assert outcome.returncode == 0, outcome.describe()
    assert (sandbox.cwd / "state" / "swarmd.db").exists()
    assert list(sandbox.cwd.iterdir()) == [sandbox.cwd / "state"]


def test_relative_home_from_a_removed_directory_is_refused(sandbox: Sandbox) -> None:
    gone = sandbox.root / "gone"
    gone.mkdir()
    env = sandbox.env(SWARMD_HOME="state")
    # The shell removes the directory it then runs swarmd from.
    script = f'cd "{gone}" && rmdir "{gone}" && exec "$@"'
    result = subprocess.run(
        ["sh", "-c", script, "sh", sys.executable, "-m", "swarmd", "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == SETTINGS, result.stderr
    assert "the current directory is gone" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_absolute_home_works_from_a_removed_directory(sandbox: Sandbox) -> None:
    gone = sandbox.root / "gone"
    gone.mkdir()
    script = f'cd "{gone}" && rmdir "{gone}" && exec "$@"'
    result = subprocess.run(
        ["sh", "-c", script, "sh", sys.executable, "-m", "swarmd", "tickets"],
        env=sandbox.env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


# -- OLLAMA_HOST as Ollama takes it ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("::1", "http://[::1]:11434"),
        ("[::1]:11434", "http://[::1]:11434"),
        ("gpu-box:8080", "http://gpu-box:8080"),
        ("https://ollama.example.com/", "https://ollama.example.com"),
    ],
    ids=["bare-ipv6", "bracketed-ipv6", "host-port", "https-url"],
)
def test_ollama_host_in_every_form_ollama_takes_is_a_url(
    sandbox: Sandbox, value: str, shown: str
) -> None:
    outcome = sandbox.run("config", "--json", env=sandbox.env(OLLAMA_HOST=value))
    assert outcome.returncode == 0, outcome.describe()
    assert f'"ollama_host": "{shown}"' in outcome.stdout


def test_bare_ipv6_ollama_host_no_longer_breaks_a_run(sandbox: Sandbox) -> None:
    path = sandbox.ticket({"title": "t", "prompt": "hello", "agent": "echo"})
    outcome = sandbox.run("run-ticket", str(path), "--wait", env=sandbox.env(OLLAMA_HOST="::1"))
    assert outcome.returncode == 0, outcome.describe()
    assert_clean(outcome)
