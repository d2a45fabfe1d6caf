"""The daemon's side of the LLM limits: workers' permit requests and outcome reports.

Rate permits and model cooldowns are global across workers, so they live here: each
worker's router asks over its channel before a request (``acquire``) and reports every
outcome after (``report``). Both calls are answered from one ``LocalBroker``; in a fleet
(``FleetBroker``), the rate slot comes from the bucket every daemon shares, and a 429's
Retry-After pauses the provider for all of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from swarmd.llm import (
    BudgetExceededError,
    CooldownTable,
    LocalBroker,
    ModelCoolingError,
    Outcome,
    RateLimiter,
    refusal_to_dict,
)
from swarmd.store.backend import SharedRates
from swarmd.wire.channel import ACQUIRE_CALL, REPORT_CALL

HTTP_TOO_MANY_REQUESTS = 429


class FleetBroker:
    """A daemon's permits when it shares a database with others: the cool-downs it knows
    from its own workers, and the rate slot from the fleet's bucket of the provider."""

    def __init__(
        self,
        local: LocalBroker,
        rates: SharedRates,
        *,
        limit_key: Callable[[str], str],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.local = local
        self._rates = rates
        self._limit_key = limit_key
        self._clock = clock
        self._sleep = sleep

    async def acquire(self, model: str, *, deadline: float) -> None:
        now = self._clock()
        self._refuse_if_cooling(model, now)
        key = self._limit_key(model)
        limiter = self.local.limiter
        slot = await self._rates.take(
            key, interval=limiter.interval(key), burst=limiter.burst, max_wait=deadline - now
        )
        if slot.delay is None:
            if slot.paused_s is not None:
                raise ModelCoolingError(model, now + slot.paused_s, "a rate limit (fleet-wide)")
            raise BudgetExceededError(model, slot.wait_s or 0.0)
        if slot.delay > 0:
            await self._sleep(slot.delay)
            self._refuse_if_cooling(model, self._clock())

    async def report(self, model: str, outcome: Outcome) -> None:
        await self.local.report(model, outcome)
        if outcome.status == HTTP_TOO_MANY_REQUESTS and outcome.cool_until is not None:
            await self._rates.pause(self._limit_key(model), outcome.cool_until - self._clock())

    def _refuse_if_cooling(self, model: str, now: float) -> None:
        until = self.local.cooldowns.cooling_until(model, now)
        if until is not None:
            reason = self.local.cooldowns.cooling_reason(model)
            raise ModelCoolingError(model, until, reason)


class PermitService:
    """Answers workers' ``acquire`` and ``report`` calls from one broker."""

    def __init__(
        self, rpm: int, *, limit_key: Callable[[str], str], fleet: SharedRates | None = None
    ) -> None:
        self.local = LocalBroker(RateLimiter(rpm), CooldownTable(), limit_key=limit_key)
        self.broker: LocalBroker | FleetBroker = (
            self.local if fleet is None else FleetBroker(self.local, fleet, limit_key=limit_key)
        )
        self._answers: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            ACQUIRE_CALL: self._acquire,
            REPORT_CALL: self._report,
        }

    async def answer_call(self, method: str, args: dict[str, Any]) -> Any:
        answer = self._answers.get(method)
        if answer is None:
            raise ValueError(f"unknown call {method!r}")
        return await answer(args)

    async def _acquire(self, args: dict[str, Any]) -> dict[str, Any] | None:
        try:
            await self.broker.acquire(str(args["model"]), deadline=float(args["deadline"]))
        except (ModelCoolingError, BudgetExceededError) as refusal:
            return refusal_to_dict(refusal)
        return None

    async def _report(self, args: dict[str, Any]) -> None:
        await self.broker.report(str(args["model"]), Outcome.from_dict(args["outcome"]))

    def snapshot(self) -> dict[str, Any]:
        return dict(self.local.snapshot())
