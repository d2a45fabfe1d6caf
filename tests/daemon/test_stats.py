"""StoreStats on a real store: windows, usage, and reading every closed attempt once."""

from __future__ import annotations

import time

from swarmd.models import ExitReason, TaskSpec, TicketSpec
from swarmd.store import Store
from swarmd.store.stats import AttemptCursor, StoreStats, percentile, start_of_day
from swarmd.wire.report import UsageTotals, llm_tries, llm_usage
from tests.support.attempts import run_attempt
from tests.support.clock import FakeClock

LLM_RESULT: dict[str, object] = {
    "model": "openai/a",
    "tries": [
        {"model": "openai/a", "outcome": "server_error", "status": 500},
        {"model": "openai/a", "outcome": "ok", "status": 200},
    ],
    "usage": {"prompt_tokens": 10, "completion_tokens": 4},
    "cost_usd": 0.5,
}


async def test_window_counts_attempts_that_ended_inside_it_with_their_outcomes(
    store: Store, stats: StoreStats, clock: FakeClock
) -> None:
    await run_attempt(store, clock, 2.0, name="old")
    clock.advance(600)
    await run_attempt(store, clock, 1.0, name="a")
    await run_attempt(store, clock, 3.0, name="b", reason=ExitReason.ERROR)
    await run_attempt(store, clock, 5.0, name="c", reason=ExitReason.INTERRUPTED)

    windows = await stats.attempt_windows([300.0, 3600.0])

    recent, hour = windows[300.0], windows[3600.0]
    assert (recent.finished, recent.succeeded, recent.failed) == (3, 1, 1)
    assert (hour.finished, hour.succeeded, hour.failed) == (4, 2, 1)
    assert recent.per_minute == 3 * 60 / 300


async def test_window_percentiles_leave_out_attempts_cut_short(
    store: Store, stats: StoreStats, clock: FakeClock
) -> None:
    for i, seconds in enumerate([1.0, 2.0, 3.0, 4.0, 100.0]):
        await run_attempt(store, clock, seconds, name=f"t{i}")
    await run_attempt(store, clock, 500.0, name="cut", reason=ExitReason.CANCELLED)

    window = (await stats.attempt_windows([3600.0]))[3600.0]

    assert window.p50_s == 3.0
    assert window.p95_s == 100.0


async def test_busy_time_counts_open_attempts_and_clips_to_the_window(
    store: Store, stats: StoreStats, clock: FakeClock
) -> None:
    await run_attempt(store, clock, 200.0, name="straddles")  # 100 s of it inside the window
    await store.submit_ticket(TicketSpec(title="open", tasks=(TaskSpec(name="o", prompt="p"),)))
    assert await store.claim_ready_task() is not None
    clock.advance(50.0)  # open for 50 s; the finished one ended 50 s before now
    window = (await stats.attempt_windows([150.0]))[150.0]

    assert window.busy_worker_s == 100.0 + 50.0
    assert window.utilisation(max_workers=2) == 150.0 / 300.0


async def test_window_with_no_attempts_has_no_percentiles(stats: StoreStats) -> None:
    window = (await stats.attempt_windows([300.0]))[300.0]

    assert (window.finished, window.p50_s, window.p95_s, window.busy_worker_s) == (0, None, None, 0)


async def test_usage_since_sums_tokens_and_cost_by_model_including_fix_rounds(
    store: Store, stats: StoreStats, clock: FakeClock
) -> None:
    await run_attempt(store, clock, 1.0, name="yesterday", result=LLM_RESULT)
    clock.advance(3600)
    since = clock()
    await run_attempt(store, clock, 1.0, name="a", result=LLM_RESULT)
    verify: dict[str, object] = {
        "checks": [],
        "fix_rounds": [
            {"ok": True, **LLM_RESULT, "model": "anthropic/b", "cost_usd": None},
            {"ok": False, "error": "chain failed"},
        ],
    }
    await run_attempt(store, clock, 1.0, name="v", result=verify, reason=ExitReason.ERROR)

    usage = UsageTotals.from_results(await stats.results_since(since))

    assert usage.by_model["openai/a"].prompt_tokens == 10
    assert usage.by_model["openai/a"].cost_usd == 0.5
    assert usage.by_model["anthropic/b"].completion_tokens == 4
    assert usage.by_model["anthropic/b"].cost_usd == 0.0
    assert (usage.total.prompt_tokens, usage.total.completion_tokens) == (20, 8)


async def test_closed_attempts_returns_each_attempt_once_in_pages(
    store: Store, stats: StoreStats, clock: FakeClock
) -> None:
    ids = [await run_attempt(store, clock, 1.0, name=f"t{i}") for i in range(7)]

    seen: list[int] = []
    cursor = AttemptCursor()
    while True:
        page, cursor = await stats.closed_attempts(cursor, limit=3)
        seen += [a.id for a in page]
        if not page:
            break

    assert seen == ids
    assert cursor == AttemptCursor(covered_below=ids[-1] + 1)


async def test_closed_attempts_picks_up_an_attempt_that_closes_after_later_ones(
    store: Store, stats: StoreStats, clock: FakeClock
) -> None:
    await store.submit_ticket(TicketSpec(title="slow", tasks=(TaskSpec(name="s", prompt="p"),)))
    slow = await store.claim_ready_task()
    assert slow is not None
    later = await run_attempt(store, clock, 1.0, name="quick")

    first, cursor = await stats.closed_attempts(AttemptCursor())
    again, cursor = await stats.closed_attempts(cursor)
    await store.complete_attempt(slow.attempt.token)
    last, cursor = await stats.closed_attempts(cursor)

    assert [a.id for a in first] == [later]
    assert again == []
    assert [a.id for a in last] == [slow.attempt.id]
    assert cursor.covered_below == later + 1 and not cursor.seen


async def test_closed_attempt_carries_its_duration_reason_and_result(
    store: Store, stats: StoreStats, clock: FakeClock
) -> None:
    await run_attempt(store, clock, 2.5, reason=ExitReason.TIMEOUT, result={"x": 1})

    [attempt], _ = await stats.closed_attempts(AttemptCursor())

    assert (attempt.duration_s, attempt.exit_reason, attempt.result) == (2.5, "timeout", {"x": 1})


def test_llm_tries_and_usage_ignore_results_of_other_shapes() -> None:
    odd = {"tries": "none", "usage": [1], "fix_rounds": [3, {"tries": [7]}], "model": None}

    assert list(llm_tries(odd)) == []
    assert list(llm_usage(odd)) == []
    assert list(llm_tries(None)) == []


def test_llm_tries_lists_every_request_of_the_result() -> None:
    assert list(llm_tries(LLM_RESULT)) == [("openai/a", "server_error"), ("openai/a", "ok")]


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]

    assert percentile(values, 0.5) == 10.0
    assert percentile(values, 0.95) == 19.0
    assert percentile([4.0], 0.95) == 4.0
    assert percentile([], 0.5) is None


def test_start_of_day_is_local_midnight() -> None:
    now = time.time()
    midnight = time.localtime(start_of_day(now))

    assert (midnight.tm_hour, midnight.tm_min, midnight.tm_sec) == (0, 0, 0)
    assert 0 <= now - start_of_day(now) < 25 * 3600
