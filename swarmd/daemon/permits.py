"""The daemon's side of the LLM limits, and the provider settings it hands to llm workers.

Rate permits and model cooldowns are global across workers, so they live here: each
worker's router asks over its channel before a request and reports every outcome after.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swarmd.config import Settings
from swarmd.llm import (
    BudgetExceededError,
    CooldownTable,
    LocalBroker,
    ModelCoolingError,
    Outcome,
    ProviderConfig,
    RateLimiter,
    build_provider_config,
    refusal_to_dict,
)


def provider_config(settings: Settings) -> ProviderConfig:
    def secret(value: Any) -> str | None:
        return value.get_secret_value() if value is not None else None

    return build_provider_config(
        openai_api_key=secret(settings.openai_api_key),
        openai_base_url=settings.openai_base_url,
        anthropic_api_key=secret(settings.anthropic_api_key),
        anthropic_base_url=settings.anthropic_base_url,
        minimax_api_key=secret(settings.minimax_api_key),
        minimax_base_url=settings.minimax_base_url,
        ollama_host=settings.ollama_host,
        aliases=settings.model_aliases,
        prices=settings.model_prices,
    )


class BrokerService:
    """Answers workers' ``acquire`` and ``report`` calls from one ``LocalBroker``."""

    def __init__(self, settings: Settings) -> None:
        config = provider_config(settings)
        self.local = LocalBroker(
            RateLimiter(settings.api_rate_limit_rpm),
            CooldownTable(),
            limit_key=config.provider_name,
        )

    async def answer_call(self, method: str, args: dict[str, Any]) -> Any:
        if method == "acquire":
            try:
                await self.local.acquire(str(args["model"]), deadline=float(args["deadline"]))
            except (ModelCoolingError, BudgetExceededError) as refusal:
                return refusal_to_dict(refusal)
            return None
        if method == "report":
            await self.local.report(str(args["model"]), Outcome.from_dict(args["outcome"]))
            return None
        raise ValueError(f"unknown call {method!r}")

    def snapshot(self) -> dict[str, Any]:
        return dict(self.local.snapshot())


def llm_job_settings(settings: Settings) -> dict[str, Any]:
    """What an llm worker needs to build its router; keys included, so never logged."""
    config = provider_config(settings)
    return {
        "endpoints": {
            name: {"base_url": e.base_url, "api_key": e.api_key, "headers": dict(e.headers)}
            for name, e in config.endpoints.items()
        },
        "aliases": dict(config.aliases),
        "prices": {model: list(price) for model, price in config.prices.items()},
        "fallback_on_rate_limit": settings.fallback_on_rate_limit,
        "request_timeout_seconds": settings.llm_request_timeout_seconds,
    }


def grantable_env(settings: Settings, base_env: Mapping[str, str]) -> dict[str, str]:
    """Variables a command agent may be granted by name: the environment plus provider keys
    read from ``.env``. Nothing here reaches a worker unless its agent lists the name."""
    found = dict(base_env)
    for name, value in (
        ("OPENAI_API_KEY", settings.openai_api_key),
        ("ANTHROPIC_API_KEY", settings.anthropic_api_key),
        ("MINIMAX_API_KEY", settings.minimax_api_key),
    ):
        if value is not None:
            found[name] = value.get_secret_value()
    return found
