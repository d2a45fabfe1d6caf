"""Talking to LLMs: providers over plain httpx, the router, and the shared limits.

Lean on purpose (workers import it): httpx and the standard library only. It knows nothing
of the queue, the supervisor, the settings or the outputs; the composition root hands it
plain values (``build_provider_config``) and a ``PermitBroker``.
"""

from typing import TYPE_CHECKING, Any

from swarmd.llm.errors import (
    AllModelsFailedError,
    BudgetExceededError,
    ChainFailedError,
    Disposition,
    ModelCallError,
    ModelCoolingError,
    RequestRejectedError,
)
from swarmd.llm.limits import CooldownTable, ModelStatus, RateLimiter
from swarmd.llm.permits import LocalBroker, PermitBroker, raise_refusal, refusal_to_dict
from swarmd.llm.provider_config import Endpoint, ProviderConfig, build_provider_config
from swarmd.llm.types import (
    ChatRequest,
    ChatResponse,
    Message,
    ModelTry,
    Outcome,
    RouterResult,
    strip_reasoning,
)

if TYPE_CHECKING:
    from swarmd.llm.router import RequestTimeouts, Router, create_http_client

_ROUTER_NAMES = frozenset({"RequestTimeouts", "Router", "create_http_client"})


def __getattr__(name: str) -> Any:
    # The router brings httpx (~80 ms to import): the daemon needs only the limits and
    # permits, so the router is imported on first use (workers preload it).
    if name in _ROUTER_NAMES:
        from swarmd.llm import router

        return getattr(router, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AllModelsFailedError",
    "BudgetExceededError",
    "ChainFailedError",
    "ChatRequest",
    "ChatResponse",
    "CooldownTable",
    "Disposition",
    "Endpoint",
    "LocalBroker",
    "Message",
    "ModelCallError",
    "ModelCoolingError",
    "ModelStatus",
    "ModelTry",
    "Outcome",
    "PermitBroker",
    "ProviderConfig",
    "RateLimiter",
    "RequestRejectedError",
    "RequestTimeouts",
    "Router",
    "RouterResult",
    "build_provider_config",
    "create_http_client",
    "raise_refusal",
    "refusal_to_dict",
    "strip_reasoning",
]
