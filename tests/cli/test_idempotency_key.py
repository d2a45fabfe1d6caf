"""An idempotency key names one ticket: the same ticket again is the same id; another
ticket under the same key is refused, naming the key and the ticket it already names."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import one_sentence, read_store, swarmd_says, write_ticket

FIRST = {"title": "deploy", "tasks": [{"name": "a", "agent": "echo", "prompt": "v1"}]}
OTHER = {"title": "deploy", "tasks": [{"name": "a", "agent": "echo", "prompt": "v2"}]}


def stored_ids(home: Path) -> list[int]:
    return [t.id for t in read_store(home, lambda store: store.list_tickets())]


def submit(tmp_path: Path, env: dict[str, str], ticket: dict[str, object], *args: str) -> str:
    result = swarmd_says("submit", str(write_ticket(tmp_path, ticket)), *args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_same_ticket_with_the_same_key_is_the_same_ticket(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    first = submit(tmp_path, swarmd_env, FIRST, "--key", "deploy-42")
    again = submit(tmp_path, swarmd_env, FIRST, "--key", "deploy-42", "--json")

    assert first == "1"
    assert again == '{"ticket": 1, "created": false}'
    assert stored_ids(home) == [1]


def test_a_key_in_the_file_matches_the_same_key_given_on_the_command_line(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    first = submit(tmp_path, swarmd_env, FIRST, "--key", "deploy-42")
    again = submit(tmp_path, swarmd_env, {**FIRST, "key": "deploy-42"})

    assert first == again == "1"
    assert stored_ids(home) == [1]


def test_another_ticket_with_a_used_key_is_refused_naming_the_key_and_the_ticket(
    tmp_path: Path, swarmd_env: dict[str, str], home: Path
) -> None:
    submit(tmp_path, swarmd_env, FIRST, "--key", "deploy-42")

    result = swarmd_says(
        "submit", str(write_ticket(tmp_path, OTHER)), "--key", "deploy-42", env=swarmd_env
    )

    assert result.returncode == 2
    assert result.stdout == ""
    message = one_sentence(result.stderr)
    assert message.startswith("swarmd: key 'deploy-42' already names ticket 1, which was ")
    assert "nothing was written" in message
    assert stored_ids(home) == [1]
