"""Which providers are configured, where they live and what their models cost: built once
by the composition root from the providers' own variables, handed to the router."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from swarmd.llm.types import ChatResponse

OPENAI_BASE_URL = "https://api.openai.com/v1"
ANTHROPIC_BASE_URL = "https://api.anthropic.com"
MINIMAX_BASE_URL = "https://api.minimax.io/v1"
OLLAMA_HOST = "http://127.0.0.1:11434"
OLLAMA_PORT = 11434
CACHE_WRITE_PRICE = 1.25
"""Anthropic's price of a prompt-cache write (five-minute entries), times the input price."""
CACHE_WRITE_1H_PRICE = 2.0
"""Its price of a write to a one-hour cache entry, times the input price."""
CACHE_READ_PRICE = 0.1
"""Its price of a prompt-cache read, times the input price."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one provider lives and how to authenticate. The key never shows in a repr."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """Every configured provider, built once by the composition root from the settings.

    ``prices`` maps a ``provider/model`` name to US dollars per million input and output
    tokens. Prompt tokens a provider reports as written to or read from its prompt cache are
    priced as Anthropic prices them, from the input price (``cost_of``).
    """

    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every API key, for redaction."""
        return tuple(e.api_key for e in self.endpoints.values() if e.api_key)

    def provider_name(self, model: str) -> str:
        """The provider serving ``model``, aliases applied."""
        prefix = model.partition("/")[0]
        return self.aliases.get(prefix, prefix)

    def price_of(self, model: str) -> tuple[float, float] | None:
        if model in self.prices:
            return self.prices[model]
        name = model.partition("/")[2]
        return self.prices.get(f"{self.provider_name(model)}/{name}")

    def cost_of(self, response: ChatResponse) -> float | None:
        """What ``response`` cost in US dollars; ``None`` when its model has no price."""
        price = self.price_of(response.model)
        if price is None:
            return None
        per_input, per_output = price
        written = response.cache_creation_tokens
        written_1h = min(response.cache_creation_1h_tokens, written)
        uncached = max(0, response.prompt_tokens - written - response.cache_read_tokens)
        prompt = (
            uncached
            + (written - written_1h) * CACHE_WRITE_PRICE
            + written_1h * CACHE_WRITE_1H_PRICE
            + response.cache_read_tokens * CACHE_READ_PRICE
        )
        return (prompt * per_input + response.completion_tokens * per_output) / 1e6


def build_provider_config(
    *,
    openai_api_key: str | None = None,
    openai_base_url: str | None = None,
    anthropic_api_key: str | None = None,
    anthropic_base_url: str | None = None,
    minimax_api_key: str | None = None,
    minimax_base_url: str | None = None,
    ollama_host: str | None = None,
    extra: Mapping[str, Endpoint] | None = None,
    aliases: Mapping[str, str] | None = None,
    prices: Mapping[str, tuple[float, float]] | None = None,
) -> ProviderConfig:
    """A ``ProviderConfig`` from the values of the providers' own variables.

    A provider is configured when it has a key or a base URL; Ollama always is (it is local
    and needs no key), so ``ollama/...`` names work with nothing set.
    """
    endpoints: dict[str, Endpoint] = {}
    if openai_api_key or openai_base_url:
        endpoints["openai"] = Endpoint(openai_base_url or OPENAI_BASE_URL, openai_api_key)
    if anthropic_api_key or anthropic_base_url:
        endpoints["anthropic"] = Endpoint(
            anthropic_base_url or ANTHROPIC_BASE_URL, anthropic_api_key
        )
    if minimax_api_key or minimax_base_url:
        endpoints["minimax"] = Endpoint(minimax_base_url or MINIMAX_BASE_URL, minimax_api_key)
    endpoints["ollama"] = Endpoint(ollama_base_url(ollama_host))
    endpoints.update(extra or {})
    return ProviderConfig(endpoints=endpoints, aliases=dict(aliases or {}), prices=prices or {})


def ollama_base_url(host: str | None) -> str:
    """The OpenAI-compatible base URL for an ``OLLAMA_HOST`` value, read as Ollama reads it:
    a bare ``host[:port]`` defaults to port 11434, a URL to its scheme's own port.

    ``swarmd.config`` validates the variable and hands over a URL; this reading of it agrees
    with the configuration's on every form it accepts (bare IPv6 addresses included).
    """
    raw = (host or "").strip().rstrip("/") or OLLAMA_HOST
    has_scheme = "://" in raw
    scheme, _, rest = raw.partition("://") if has_scheme else ("http", "", raw)
    hostport, slash, path = rest.partition("/")
    if hostport.count(":") > 1 and not hostport.startswith("["):
        hostport = f"[{hostport}]"  # a bare IPv6 address, such as ::1
    parts = urlsplit(f"{scheme}://{hostport}{slash}{path}")
    hostname = parts.hostname or "127.0.0.1"
    if hostname in ("0.0.0.0", "::"):  # a listen address: connect through loopback instead
        hostname = "127.0.0.1"
    if ":" in hostname:
        hostname = f"[{hostname}]"
    port = parts.port or (None if has_scheme else OLLAMA_PORT)
    netloc = f"{hostname}:{port}" if port else hostname
    return f"{parts.scheme}://{netloc}{parts.path}/v1"
