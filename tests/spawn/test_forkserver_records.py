"""The fork server's control records: what the daemon asks for survives the trip, and a
malformed request is refused rather than half-read."""

from __future__ import annotations

import pytest

from swarmd.wire.forkserver import SpawnRequest, decode


def request_message(**changes: object) -> dict[str, object]:
    message = decode(SpawnRequest(7, "/w", {"PATH": "/bin"}, "/w.log", models=False).to_record())
    message.update(changes)
    return message


def test_a_spawn_request_survives_its_record() -> None:
    sent = SpawnRequest(7, "/w", {"PATH": "/bin"}, "/w.log", models=False)
    assert SpawnRequest.from_message(decode(sent.to_record())) == sent


def test_a_request_that_does_not_say_whether_it_calls_models_is_taken_to_call_them() -> None:
    message = request_message()
    del message["models"]
    assert SpawnRequest.from_message(message).models is True


@pytest.mark.parametrize("models", ["no", 0, None])
def test_a_request_whose_models_flag_is_not_a_boolean_is_refused(models: object) -> None:
    with pytest.raises(ValueError, match="not a valid spawn request"):
        SpawnRequest.from_message(request_message(models=models))
