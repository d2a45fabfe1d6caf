"""Running one attempt through a real store, for tests of what is counted from attempts."""

from __future__ import annotations

from swarmd.models import ExitReason, TaskSpec, TicketSpec
from swarmd.store import Store
from tests.support.clock import FakeClock


async def run_attempt(
    store: Store,
    clock: FakeClock,
    seconds: float,
    *,
    reason: ExitReason = ExitReason.OK,
    result: dict[str, object] | None = None,
    name: str = "t",
) -> int:
    """Submit a one-task ticket and run one attempt of it for ``seconds``; its attempt id."""
    await store.submit_ticket(
        TicketSpec(title=name, tasks=(TaskSpec(name=name, prompt="p", max_attempts=1),))
    )
    claimed = await store.claim_ready_task()
    assert claimed is not None
    clock.advance(seconds)
    if reason is ExitReason.OK:
        await store.complete_attempt(claimed.attempt.token, result=result)
    else:
        await store.fail_attempt(
            claimed.attempt.token, reason=reason, error=reason.value, result=result
        )
    return claimed.attempt.id
