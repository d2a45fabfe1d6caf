"""The daemon's side of the LLM limits: workers' permit requests and outcome reports.

Rate permits and model cooldowns are global across workers, so they live here: each
worker's router asks over its channel before a request (``acquire``) and reports every
outcome after (``report``). Both calls are answered from one ``LocalBroker``.
"""

from __future__ import annotations

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
from swarmd.wire.channel import ACQUIRE_CALL, REPORT_CALL


class PermitService:
    """Answers workers' ``acquire`` and ``report`` calls from one ``LocalBroker``."""

    def __init__(self, rpm: int, *, limit_key: Callable[[str], str]) -> None:
        self.local = LocalBroker(RateLimiter(rpm), CooldownTable(), limit_key=limit_key)
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
            await self.local.acquire(str(args["model"]), deadline=float(args["deadline"]))
        except (ModelCoolingError, BudgetExceededError) as refusal:
            return refusal_to_dict(refusal)
        return None

    async def _report(self, args: dict[str, Any]) -> None:
        await self.local.report(str(args["model"]), Outcome.from_dict(args["outcome"]))

    def snapshot(self) -> dict[str, Any]:
        return dict(self.local.snapshot())
