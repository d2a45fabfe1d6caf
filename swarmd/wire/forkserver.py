"""The control records between the daemon and the fork server, encoder and decoder together.

A ``SOCK_SEQPACKET`` socketpair; every record is one JSON object::

    daemon -> zygote   {"op": "spawn", "id": 7, "cwd": ..., "env": {...}, "log": ...,
                        "models": true}
                       with the worker's channel fd attached (SCM_RIGHTS)
    zygote -> daemon   {"op": "ready", "pid": P, "warm_up_s": 0.31}
    zygote -> daemon   {"op": "spawned", "id": 7, "pid": W, "start_ticks": T}
    zygote -> daemon   {"op": "error", "id": 7, "error": "one sentence"}
    zygote -> daemon   {"op": "exited", "pid": W, "returncode": 0}

``start_ticks`` is the worker's start in clock ticks since boot (``/proc/PID/stat``), which
the daemon turns into a ``ProcessIdentity``; ``returncode`` is negative for a signal, as in
``subprocess``. "spawned" is sent only once the worker leads its own session (so the
daemon's ``killpg`` reaches it), and always before its "exited". An "error" whose request
could not be read carries ``"id": null``. ``models`` says the worker will call models, so
the zygote must have imported the model stack before it forks it (absent: true).

Standard library only: the fork server imports it before anything else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


def encode(message: Mapping[str, Any]) -> bytes:
    """One control record."""
    return json.dumps(message, separators=(",", ":")).encode()


def decode(record: bytes) -> dict[str, Any]:
    """One control record back into a message; ``ValueError`` if it is not a JSON object."""
    message = json.loads(record)
    if not isinstance(message, dict):
        raise ValueError("a control record was not a JSON object")
    return message


@dataclass(frozen=True, slots=True)
class SpawnRequest:
    """daemon -> zygote: fork one worker in ``cwd`` with exactly ``env``, output to ``log``;
    ``models``: it will call models."""

    id: int
    cwd: str
    env: dict[str, str]
    log: str
    models: bool = True

    def to_record(self) -> bytes:
        return encode(
            {
                "op": "spawn",
                "id": self.id,
                "cwd": self.cwd,
                "env": self.env,
                "log": self.log,
                "models": self.models,
            }
        )

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> SpawnRequest:
        env = message.get("env")
        fields = (message.get("id"), message.get("cwd"), message.get("log"))
        models = message.get("models", True)
        if (
            message.get("op") != "spawn"
            or not isinstance(fields[0], int)
            or not all(isinstance(field, str) for field in fields[1:])
            or not isinstance(env, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
            or not isinstance(models, bool)
        ):
            raise ValueError(f"not a valid spawn request: {message!r:.200}")
        return cls(
            id=fields[0], cwd=str(fields[1]), env=dict(env), log=str(fields[2]), models=models
        )


def request_id(record: bytes) -> int | None:
    """The id of a record that may not be a valid request, to answer it with an error."""
    try:
        value = decode(record).get("id")
    except ValueError:
        return None
    return value if isinstance(value, int) else None


@dataclass(frozen=True, slots=True)
class Ready:
    """zygote -> daemon: warmed up, taking requests."""

    pid: int
    warm_up_s: float


@dataclass(frozen=True, slots=True)
class Spawned:
    """zygote -> daemon: request ``id`` is worker ``pid``, which leads its own session."""

    id: int
    pid: int
    start_ticks: int


@dataclass(frozen=True, slots=True)
class SpawnFailed:
    """zygote -> daemon: request ``id`` (None when unreadable) failed, in one sentence."""

    id: int | None
    error: str


@dataclass(frozen=True, slots=True)
class Exited:
    """zygote -> daemon: worker ``pid`` exited; negative ``returncode``: killed by a signal."""

    pid: int
    returncode: int


Reply = Ready | Spawned | SpawnFailed | Exited

_OPS: dict[str, type[Reply]] = {
    "ready": Ready,
    "spawned": Spawned,
    "error": SpawnFailed,
    "exited": Exited,
}
_OP_OF = {kind: op for op, kind in _OPS.items()}


def encode_reply(reply: Reply) -> bytes:
    return encode({"op": _OP_OF[type(reply)], **asdict(reply)})


def decode_reply(record: bytes) -> Reply | None:
    """A reply from its record; None for an op this side does not know.

    ``ValueError``, ``KeyError`` or ``TypeError`` when the record is not a valid reply.
    """
    message = decode(record)
    kind = _OPS.get(str(message.get("op")))
    if kind is None:
        return None
    if kind is Ready:
        return Ready(int(message["pid"]), float(message.get("warm_up_s") or 0.0))
    if kind is Spawned:
        return Spawned(int(message["id"]), int(message["pid"]), int(message["start_ticks"]))
    if kind is SpawnFailed:
        raw_id = message.get("id")
        return SpawnFailed(raw_id if isinstance(raw_id, int) else None, str(message["error"]))
    return Exited(int(message["pid"]), int(message["returncode"]))
