"""The validation matrix: how a ticket of llm tasks meets a failing primary, end to end.

Every case runs ``swarmd run-ticket FILE --wait`` as a user would, with the primary and the
fallback served by the loopback fake provider, and reads the outcome from the store, the
workspace and the archives.
"""

from __future__ import annotations

from pathlib import Path

from swarmd.models import TaskState
from tests.support.cli import attempts_of, tasks_of
from tests.support.fake_llm import FakeLLMServer, Fault
from tests.support.llm_env import (
    FALLBACK,
    FALLBACK_WIRE,
    PRIMARY,
    PRIMARY_WIRE,
    archive_member,
    last_results,
    llm_ticket,
    run_ticket,
    tried_models,
)


def test_fallback_answers_when_the_primary_keeps_failing_with_500(
    tmp_path: Path, llm_env: dict[str, str], home: Path, fake_llm: FakeLLMServer
) -> None:
    fake_llm.script(PRIMARY_WIRE, default=Fault.http(500))

    result = run_ticket(tmp_path, llm_env, llm_ticket("landing"))

    assert result.returncode == 0, result.stdout + result.stderr
    answer = last_results(home)["landing"]
    assert answer["model"] == FALLBACK
    tries = tried_models(answer)
    assert tries[-1] == (FALLBACK, "ok")
    assert len(tries) >= 3, "the primary was retried before the chain moved on"
    assert set(tries[:-1]) == {(PRIMARY, "server_error")}
    assert fake_llm.count(PRIMARY_WIRE) == len(tries) - 1
    written = f"{FALLBACK_WIRE} answers: Write the landing page"
    assert (home / "work" / "1" / "landing" / "answer.md").read_text() == written
    archive = home / "outputs" / "1" / "landing.tar.gz"
    assert archive_member(archive, "files/answer.md") == written


def test_fallback_answers_at_once_when_the_primary_is_rate_limited(
    tmp_path: Path, llm_env: dict[str, str], home: Path, fake_llm: FakeLLMServer
) -> None:
    fake_llm.script(PRIMARY_WIRE, default=Fault.rate_limited(retry_after=30))

    result = run_ticket(tmp_path, llm_env, llm_ticket("landing"))

    assert result.returncode == 0, result.stdout + result.stderr
    answer = last_results(home)["landing"]
    assert answer["model"] == FALLBACK
    assert tried_models(answer) == [(PRIMARY, "rate_limited"), (FALLBACK, "ok")]
    assert fake_llm.count(PRIMARY_WIRE) == 1
    archive = home / "outputs" / "1" / "landing.tar.gz"
    assert archive_member(archive, "files/answer.md").startswith(f"{FALLBACK_WIRE} answers:")


def test_rate_limited_primary_is_asked_again_after_its_retry_after_without_fallback(
    tmp_path: Path, llm_env: dict[str, str], home: Path, fake_llm: FakeLLMServer
) -> None:
    fake_llm.script(PRIMARY_WIRE, Fault.rate_limited(retry_after=1))
    env = {**llm_env, "SWARMD_FALLBACK_ON_RATE_LIMIT": "false"}

    result = run_ticket(tmp_path, env, llm_ticket("landing"))

    assert result.returncode == 0, result.stdout + result.stderr
    answer = last_results(home)["landing"]
    assert answer["model"] == PRIMARY
    assert tried_models(answer) == [(PRIMARY, "rate_limited"), (PRIMARY, "ok")]
    assert fake_llm.count(FALLBACK_WIRE) == 0
    first, second = fake_llm.requests(PRIMARY_WIRE)
    assert second.monotonic - first.monotonic >= 1.0
    archive = home / "outputs" / "1" / "landing.tar.gz"
    assert archive_member(archive, "files/answer.md").startswith(f"{PRIMARY_WIRE} answers:")


def test_task_naming_both_failures_retries_by_policy_then_dies(
    tmp_path: Path, llm_env: dict[str, str], home: Path, fake_llm: FakeLLMServer
) -> None:
    fake_llm.script(PRIMARY_WIRE, default=Fault.http(401))
    out_of_credit = "Your credit balance is too low to access the Anthropic API."
    fake_llm.script(FALLBACK_WIRE, default=Fault.http(400, message=out_of_credit))
    env = {**llm_env, "SWARMD_MAX_ATTEMPTS": "2"}
    # Both models cool down for a minute after failing: within a 20 s budget the second
    # attempt must give up at once rather than wait for them.
    ticket = llm_ticket("landing", timeout_seconds=20)

    result = run_ticket(tmp_path, env, ticket)

    assert result.returncode == 1, result.stdout + result.stderr
    (task,) = tasks_of(home, 1)
    assert task.state is TaskState.DEAD
    attempts = attempts_of(home, task.id)
    assert len(attempts) == 2
    first_error = attempts[0].error or ""
    assert f"{PRIMARY}: HTTP 401 authentication failed" in first_error
    assert f"{FALLBACK}: HTTP 400 quota exhausted" in first_error
    assert out_of_credit in first_error
    for model in (PRIMARY, FALLBACK):
        assert model in (task.last_error or "")
        assert model in result.stdout
    assert "landing: dead" in result.stdout
    # The cool-downs are the daemon's: the second attempt asked neither model again.
    assert fake_llm.counts() == {PRIMARY_WIRE: 1, FALLBACK_WIRE: 1}


def test_workers_skip_a_cooling_primary_and_go_straight_to_the_fallback(
    tmp_path: Path, llm_env: dict[str, str], home: Path, fake_llm: FakeLLMServer
) -> None:
    fake_llm.script(PRIMARY_WIRE, Fault.http(401))  # once; it would answer if asked again
    env = {
        **llm_env,
        "SWARMD_MAX_CONCURRENT_WORKERS": "2",
        # One permit per provider per second: the second worker's permit for the primary
        # comes after the first worker has reported the 401, as it would on a busy day.
        "SWARMD_API_RATE_LIMIT_RPM": "60",
    }
    names = ("one", "two", "three", "four")

    result = run_ticket(tmp_path, env, llm_ticket(*names))

    assert result.returncode == 0, result.stdout + result.stderr
    assert fake_llm.count(PRIMARY_WIRE) == 1
    results = last_results(home)
    assert {r["model"] for r in results.values()} == {FALLBACK}
    tries = sorted(tried_models(r) for r in results.values())
    assert tries == [
        [(FALLBACK, "ok")],
        [(FALLBACK, "ok")],
        [(FALLBACK, "ok")],
        [(PRIMARY, "auth_failed"), (FALLBACK, "ok")],
    ]


def test_offline_echo_model_answers_when_no_provider_is_configured_and_says_so(
    tmp_path: Path, offline_env: dict[str, str], home: Path
) -> None:
    result = run_ticket(tmp_path, offline_env, llm_ticket("landing"))

    assert result.returncode == 0, result.stdout + result.stderr
    # Said first, before any progress, on stderr with the progress lines.
    assert result.stderr.index("no LLM provider is configured") < result.stderr.index("ticket 1")
    answer = last_results(home)["landing"]
    assert answer["model"] == "echo/echo"
    assert tried_models(answer) == [("echo/echo", "ok")]
    archive = home / "outputs" / "1" / "landing.tar.gz"
    assert archive_member(archive, "files/answer.md") == "Write the landing page"


def test_base_url_without_a_scheme_is_refused_as_an_invalid_setting(
    tmp_path: Path, llm_env: dict[str, str], home: Path, fake_llm: FakeLLMServer
) -> None:
    schemeless = fake_llm.openai_base_url.removeprefix("http://")
    env = {**llm_env, "OPENAI_BASE_URL": schemeless, "SWARMD_MAX_ATTEMPTS": "1"}
    result = run_ticket(tmp_path, env, llm_ticket("landing", timeout_seconds=1))

    assert result.returncode == 78, result.stdout + result.stderr
    assert "OPENAI_BASE_URL" in result.stderr
