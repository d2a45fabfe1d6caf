"""What a worker inherits: no systemd variables, no provider secrets unless granted."""

from __future__ import annotations

from swarmd.spawn.groups import scrub_environment

SYSTEMD_ENV = {
    "NOTIFY_SOCKET": "/run/systemd/notify",
    "WATCHDOG_USEC": "30000000",
    "WATCHDOG_PID": "42",
    "LISTEN_FDS": "1",
    "LISTEN_PID": "42",
    "INVOCATION_ID": "abc",
    "JOURNAL_STREAM": "8:1234",
}


def test_systemd_variables_are_dropped() -> None:
    env = {**SYSTEMD_ENV, "PATH": "/usr/bin", "HOME": "/var/lib/swarmd"}
    assert scrub_environment(env) == {"PATH": "/usr/bin", "HOME": "/var/lib/swarmd"}


def test_systemd_variables_are_dropped_even_when_asked_to_keep_them() -> None:
    assert scrub_environment(SYSTEMD_ENV, keep_names=SYSTEMD_ENV.keys()) == {}


def test_provider_keys_are_dropped() -> None:
    env = {"OPENAI_API_KEY": "sk-1", "ANTHROPIC_API_KEY": "sk-2", "MINIMAX_API_KEY": "sk-3"}
    assert scrub_environment(env) == {}


def test_anything_that_looks_like_a_secret_is_dropped() -> None:
    env = {"GITHUB_TOKEN": "t", "acme_api_key": "k", "SESSION_SECRET": "s", "TOKENIZER": "x"}
    assert scrub_environment(env) == {"TOKENIZER": "x"}


def test_granted_secrets_are_kept() -> None:
    env = {"ANTHROPIC_API_KEY": "sk-2", "OPENAI_API_KEY": "sk-1"}
    assert scrub_environment(env, keep_names={"ANTHROPIC_API_KEY"}) == {"ANTHROPIC_API_KEY": "sk-2"}


def test_named_variables_are_dropped() -> None:
    env = {"SWARMD_HOME": "/x", "PATH": "/usr/bin"}
    assert scrub_environment(env, drop_names={"SWARMD_HOME"}) == {"PATH": "/usr/bin"}


def test_the_given_mapping_is_not_changed() -> None:
    env = {"NOTIFY_SOCKET": "/run/systemd/notify"}
    scrub_environment(env)
    assert env == {"NOTIFY_SOCKET": "/run/systemd/notify"}
