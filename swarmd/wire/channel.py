"""The worker's channel to the daemon: JSON lines over a socketpair.

Workers never open the database. The daemon writes one ``job`` message; the worker sends
``heartbeat`` messages, ``call`` requests that the daemon answers with a ``reply`` (rate
permits and cooldowns are global, so they live in the daemon), and one final ``result``.

    daemon -> worker   {"type": "job", ...}
    worker -> daemon   {"type": "heartbeat"}
    worker -> daemon   {"type": "call", "id": 7, "method": "acquire", "args": {...}}
    daemon -> worker   {"type": "reply", "id": 7, "value": ..., "error": null}
    worker -> daemon   {"type": "result", "ok": true, "result": {...}}

Lean on purpose: the worker imports this module, and every task pays its start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
from typing import Any

MAX_LINE_BYTES = 16 * 1024 * 1024

ACQUIRE_CALL = "acquire"
"""A worker asks for a rate-limit permit: ``{"model", "deadline"}`` -> None or a refusal."""
REPORT_CALL = "report"
"""A worker reports how a request ended: ``{"model", "outcome"}`` -> None."""


class ChannelClosed(Exception):
    """The other end went away."""


class Channel:
    """One end of a JSON-lines channel over an asyncio stream pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._send_lock = asyncio.Lock()

    @classmethod
    async def from_socket(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_LINE_BYTES)
        return cls(reader, writer)

    def post(self, message: dict[str, Any]) -> None:
        """Queue ``message`` without waiting for the other end to take it (``flush`` waits):
        the daemon posts a job before its worker exists, which finds it as it starts."""
        try:
            self._writer.write(_encode(message))
        except (ConnectionError, RuntimeError) as exc:
            raise ChannelClosed(str(exc)) from exc

    async def flush(self) -> None:
        """Wait until what was posted is taken (or fits in the transport's buffer)."""
        async with self._send_lock:
            try:
                await self._writer.drain()
            except (ConnectionError, RuntimeError) as exc:
                raise ChannelClosed(str(exc)) from exc

    async def send(self, message: dict[str, Any]) -> None:
        data = _encode(message)
        async with self._send_lock:
            try:
                self._writer.write(data)
                await self._writer.drain()
            except (ConnectionError, RuntimeError) as exc:
                raise ChannelClosed(str(exc)) from exc

    async def receive(self) -> dict[str, Any]:
        try:
            line = await self._reader.readline()
        except (ConnectionError, ValueError) as exc:  # ValueError: line over the limit
            raise ChannelClosed(str(exc)) from exc
        if not line:
            raise ChannelClosed("end of stream")
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ChannelClosed("a message was not a JSON object")
        return message

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._writer.wait_closed()


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class CallError(Exception):
    """The daemon answered a call with an error."""


class WorkerCalls:
    """The worker's side of request/reply calls: one reader routes replies to waiters."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}

    async def call(self, method: str, **args: Any) -> Any:
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        try:
            await self._channel.send(
                {"type": "call", "id": call_id, "method": method, "args": args}
            )
            return await future
        finally:
            self._waiting.pop(call_id, None)

    async def route_replies(self) -> None:
        """Read replies until the channel closes; every pending call then fails."""
        try:
            while True:
                message = await self._channel.receive()
                if message.get("type") != "reply":
                    continue
                future = self._waiting.get(int(message["id"]))
                if future is None or future.done():
                    continue
                if message.get("error"):
                    future.set_exception(CallError(str(message["error"])))
                else:
                    future.set_result(message.get("value"))
        except ChannelClosed:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(CallError("the daemon closed the channel"))
