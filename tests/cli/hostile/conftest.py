"""Fixtures of the hostile-input suite; its helpers are in ``tests/support/hostile.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_llm import FakeLLMServer
from tests.support.hostile import Sandbox, make_sandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return make_sandbox(tmp_path)


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLMServer]:
    """The loopback fake provider (``tests.support``), serving from a thread of this process."""
    with FakeLLMServer() as server:
        yield server
