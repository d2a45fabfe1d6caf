"""An alert sink that keeps what it is given, for the alert tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class RecordingSink:
    name = "recording"

    def __init__(self) -> None:
        self.payloads: list[Mapping[str, Any]] = []

    async def deliver(self, payload: Mapping[str, Any], body: bytes) -> None:
        self.payloads.append(payload)

    async def aclose(self) -> None:
        pass
