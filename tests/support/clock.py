"""The one fake clock of the tests: it moves only when a test says so, or sleeps on it."""

from __future__ import annotations

START = 1_700_000_000.0


class FakeClock:
    """A wall clock that a test advances by hand, or that ``sleep`` advances at once."""

    def __init__(self, now: float = START) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
