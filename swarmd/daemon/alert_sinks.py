"""Where an alert goes: a command (the JSON on stdin, the fields in its environment) and a
webhook (a signed JSON POST). Each sink delivers one alert or raises ``AlertError``; the
queue, the retries and the redaction are ``swarmd.daemon.alerts.Alerter``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import signal
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from swarmd import __version__
from swarmd.errors import AlertError

if TYPE_CHECKING:
    # Imported where a webhook is built: a daemon without one never loads an HTTP client.
    import httpx

SIGNATURE_HEADER = "X-Swarmd-Signature"
EVENT_HEADER = "X-Swarmd-Event"
STDERR_SHOWN = 300


class AlertRefused(AlertError):
    """The receiver refused the alert for good (an HTTP 4xx): retrying cannot help."""


def sign(body: bytes, secret: bytes) -> str:
    """The signature header's value: ``sha256=`` and the HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def alert_variables(payload: Mapping[str, Any]) -> dict[str, str]:
    """The command's view of an alert: ``SWARMD_EVENT`` and ``SWARMD_EVENT_<FIELD>``."""
    variables = {"SWARMD_EVENT": str(payload["event"])}
    for key, value in payload.items():
        if key == "event" or value is None:
            continue
        shown = value if isinstance(value, str) else json.dumps(value)
        variables[f"SWARMD_EVENT_{key.upper()}"] = shown
    return variables


class AlertSink(Protocol):
    name: str

    async def deliver(self, payload: Mapping[str, Any], body: bytes) -> None:
        """Deliver one alert or raise ``AlertError``."""

    async def aclose(self) -> None: ...


class CommandSink:
    """Runs a command per alert: the JSON on stdin, the fields in its environment.

    It runs in its own session, so a command past its timeout is killed with its children.
    """

    name = "command"

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], timeout: float) -> None:
        self._argv = tuple(argv)
        self._env = dict(env)
        self._timeout = timeout

    async def deliver(self, payload: Mapping[str, Any], body: bytes) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env={**self._env, **alert_variables(payload)},
                start_new_session=True,
            )
        except OSError as exc:
            raise AlertError(f"the alert command could not start: {exc.strerror}") from exc
        try:
            async with asyncio.timeout(self._timeout):
                _, stderr = await proc.communicate(body)
        except BaseException as exc:  # a timeout, or the daemon's cancellation
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            if isinstance(exc, TimeoutError):
                raise AlertError(f"the alert command ran past {self._timeout:g} s") from exc
            raise
        if proc.returncode != 0:
            tail = stderr.decode("utf-8", "replace").strip()[-STDERR_SHOWN:]
            raise AlertError(
                f"the alert command exited {proc.returncode}" + (f": {tail}" if tail else "")
            )

    async def aclose(self) -> None:
        pass


class WebhookSink:
    """POSTs each alert as JSON, signed when a secret is set."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient,
        secret: str | None,
        timeout: float,
    ) -> None:
        self._url = url
        self._client = client
        self._secret = secret.encode() if secret else None
        self._timeout = timeout

    async def deliver(self, payload: Mapping[str, Any], body: bytes) -> None:
        import httpx

        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"swarmd/{__version__}",
            EVENT_HEADER: str(payload["event"]),
        }
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(body, self._secret)
        try:
            # httpx's timeouts bound each phase; a server that trickles bytes needs this one.
            async with asyncio.timeout(self._timeout):
                response = await self._client.post(
                    self._url, content=body, headers=headers, timeout=self._timeout
                )
        except TimeoutError as exc:
            raise AlertError(f"the webhook did not answer within {self._timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise AlertError(f"the webhook failed: {type(exc).__name__} {exc}") from exc
        status = response.status_code
        if status < 300:
            return
        if 400 <= status < 500 and status not in (408, 429):
            raise AlertRefused(f"the webhook refused the alert: HTTP {status}")
        raise AlertError(f"the webhook answered HTTP {status}")

    async def aclose(self) -> None:
        await self._client.aclose()
