"""A daemon with its dashboard on a loopback port, and the HTTP client side of the page."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.cli import Daemon, log_events, wait_until

TOKEN = "dash-Tq8Vn3Kx7Lw2Pz5Rb9Hc"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dashboard_daemon(env: dict[str, str], home: Path, **settings: str) -> tuple[Daemon, str]:
    """Start ``swarmd run`` with its dashboard on a free port; its base URL (loopback)."""
    port = free_port()
    variables = {f"SWARMD_DASHBOARD_{name.upper()}": value for name, value in settings.items()}
    daemon = Daemon({**env, "SWARMD_DASHBOARD_PORT": str(port), **variables}, home).start()
    wait_until(lambda: any(e.get("event") == "dashboard_serving" for e in log_events(home)))
    return daemon, f"http://127.0.0.1:{port}"


def read_events(url: str, *, seconds: float, headers: dict[str, str] | None = None) -> str:
    """The raw text an event stream sends in ``seconds``."""
    chunks: list[str] = []
    deadline = time.monotonic() + seconds
    with httpx.stream("GET", url, headers=headers, timeout=10) as response:
        assert response.status_code == 200, response.status_code
        assert response.headers["content-type"] == "text/event-stream"
        for chunk in response.iter_text():
            chunks.append(chunk)
            if time.monotonic() > deadline:
                break
    return "".join(chunks)


def events_of(raw: str) -> list[tuple[str, Any]]:
    """(event, data) for each message of an event stream's text."""
    found = []
    for block in raw.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields and "data" in fields:
            try:
                found.append((fields["event"], json.loads(fields["data"])))
            except ValueError:  # the last message, cut where the reading stopped
                continue
    return found
