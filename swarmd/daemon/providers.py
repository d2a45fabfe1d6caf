"""What the daemon hands down from ``Settings`` to the parts that must not read it.

The router's provider configuration (for the permit service and ``swarmd doctor``), the
``LLMSettings`` each llm worker's job carries, and the secrets a command agent may be granted.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import SecretStr

from swarmd.config import Settings
from swarmd.llm import ProviderConfig, build_provider_config
from swarmd.wire.job import EndpointSettings, LLMSettings


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def provider_config(settings: Settings) -> ProviderConfig:
    return build_provider_config(
        openai_api_key=_secret(settings.openai_api_key),
        openai_base_url=settings.openai_base_url,
        anthropic_api_key=_secret(settings.anthropic_api_key),
        anthropic_base_url=settings.anthropic_base_url,
        minimax_api_key=_secret(settings.minimax_api_key),
        minimax_base_url=settings.minimax_base_url,
        ollama_host=settings.ollama_host,
        aliases=settings.model_aliases,
        prices=settings.model_prices,
    )


def llm_job_settings(settings: Settings) -> LLMSettings:
    """What an llm worker needs to build its router; keys included, so never logged."""
    config = provider_config(settings)
    return LLMSettings(
        endpoints={
            name: EndpointSettings(e.base_url, e.api_key, dict(e.headers))
            for name, e in config.endpoints.items()
        },
        aliases=dict(config.aliases),
        prices=dict(config.prices),
        fallback_on_rate_limit=settings.fallback_on_rate_limit,
        request_timeout_seconds=settings.llm_request_timeout_seconds,
    )


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
