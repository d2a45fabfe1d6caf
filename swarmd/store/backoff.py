"""How long a failed task waits before its next attempt."""

from __future__ import annotations

import random

# 2**62 already exceeds any cap in seconds; a bound keeps the float arithmetic finite.
_MAX_EXPONENT = 62


def retry_delay(failures: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff after ``failures`` failures, capped at ``cap``, with jitter.

    The delay is ``min(base * 2**(failures - 1), cap)`` scaled by a uniform factor in
    [0.5, 1.0], so tasks that failed together do not all come back at the same instant.
    """
    exponent = min(max(failures - 1, 0), _MAX_EXPONENT)
    return min(base * 2.0**exponent, cap) * rng.uniform(0.5, 1.0)
