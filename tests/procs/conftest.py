"""Fixtures for tests with real processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.procs.child_processes import OrphanWatch, ReadyPipe, SessionLeaders
from tests.support.subreaper import make_child_subreaper


@pytest.fixture
def orphans() -> Iterator[OrphanWatch]:
    """Make the test process a child subreaper for the test, and count what it adopts."""
    make_child_subreaper()
    watch = OrphanWatch()
    try:
        yield watch
    finally:
        watch.clean_up()
        make_child_subreaper(enabled=False)


@pytest.fixture
def ready_pipe() -> Iterator[ReadyPipe]:
    pipe = ReadyPipe()
    try:
        yield pipe
    finally:
        pipe.close()


@pytest.fixture
def leaders() -> Iterator[SessionLeaders]:
    """Start session leaders; their groups are SIGKILLed and reaped after the test."""
    started = SessionLeaders()
    try:
        yield started
    finally:
        started.clean_up()
