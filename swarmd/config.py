"""Settings: read once at the edge from ``SWARMD_*`` variables and ``.env``, then handed down.

Library modules never read ``os.environ``; they take a ``Settings`` (or the plain values
they need) from the composition root.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from swarmd.errors import ConfigError
from swarmd.home import HomeLayout

OFFLINE_MODEL = "echo/echo"
ENV_PREFIX = "SWARMD_"


def default_home() -> Path:
    """``$STATE_DIRECTORY`` under systemd, else ``~/.local/state/swarmd``."""
    state_dir = os.environ.get("STATE_DIRECTORY")
    if state_dir:
        # systemd may pass several colon-separated directories; the first is ours.
        return Path(state_dir.split(":")[0])
    return Path.home() / ".local" / "state" / "swarmd"


def _provider_field(*names: str) -> Any:
    return Field(default=None, validation_alias=AliasChoices(*names))


class Settings(BaseSettings):
    """Every setting of swarmd, with its default. See ``.env.example`` for one line on each."""

    model_config = SettingsConfigDict(
        env_prefix="SWARMD_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    home: Path = Field(default_factory=default_home)
    max_concurrent_workers: int = Field(default=10, ge=1, le=1000)
    min_free_memory_mb: int = Field(default=1024, ge=0)
    max_load: float | None = Field(default=None, gt=0)
    worker_memory_limit_mb: int | None = Field(default=None, ge=1)
    worker_timeout_seconds: float = Field(default=3600.0, gt=0)
    worker_heartbeat_seconds: float = Field(default=5.0, gt=0)
    worker_hung_seconds: float = Field(default=60.0, gt=0)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    spawn_settle_seconds: float = Field(default=1.0, ge=0)
    worker_start: Literal["fork", "exec"] = "fork"
    api_rate_limit_rpm: int = Field(default=20, ge=1)
    primary_model: str | None = None
    fallback_model: Annotated[tuple[str, ...], NoDecode] = ()
    fallback_on_rate_limit: bool = True
    model_aliases: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    model_prices: dict[str, tuple[float, float]] = Field(default_factory=dict)
    llm_request_timeout_seconds: float = Field(default=600.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=100)
    retry_backoff_seconds: float = Field(default=5.0, ge=0)
    retry_backoff_max_seconds: float = Field(default=300.0, ge=0)
    max_fix_rounds: int = Field(default=2, ge=0, le=20)
    agents_file: Path | None = None
    log_level: str = "info"
    log_max_bytes: int = Field(default=50 * 1024 * 1024, ge=4096)
    log_backups: int = Field(default=3, ge=0)
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_textfile: Path | None = None

    openai_api_key: SecretStr | None = _provider_field("OPENAI_API_KEY")
    openai_base_url: str | None = _provider_field("OPENAI_BASE_URL")
    anthropic_api_key: SecretStr | None = _provider_field("ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = _provider_field("ANTHROPIC_BASE_URL")
    minimax_api_key: SecretStr | None = _provider_field("MINIMAX_API_KEY")
    minimax_base_url: str | None = _provider_field("MINIMAX_BASE_URL")
    ollama_host: str | None = _provider_field("OLLAMA_HOST")

    @field_validator("fallback_model", mode="before")
    @classmethod
    def _split_model_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("model_aliases", mode="before")
    @classmethod
    def _split_aliases(cls, value: object) -> object:
        if isinstance(value, str):
            pairs = [part.strip() for part in value.split(",") if part.strip()]
            aliases = {}
            for pair in pairs:
                alias, sep, provider = pair.partition("=")
                if not sep or not alias.strip() or not provider.strip():
                    raise ValueError(f"{pair!r} is not alias=provider")
                aliases[alias.strip()] = provider.strip()
            return aliases
        return value

    @field_validator("primary_model", "fallback_model")
    @classmethod
    def _check_model_names(cls, value: object) -> object:
        names = value if isinstance(value, tuple) else (value,) if value else ()
        for name in names:
            assert isinstance(name, str)
            provider, _, model = name.partition("/")
            if not provider or not model:
                raise ValueError(f"model {name!r} must be named provider/model")
        return value

    @field_validator("openai_base_url", "anthropic_base_url", "minimax_base_url", "ollama_host")
    @classmethod
    def _check_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme
        # OLLAMA_HOST may be a bare host:port, as Ollama itself accepts.
        if info.field_name == "ollama_host" and "://" not in value:
            return value
        if scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError("must be one of debug, info, warning, error, critical")
        return level

    @property
    def layout(self) -> HomeLayout:
        """Every path under the home."""
        return HomeLayout(self.home)

    @property
    def agents_path(self) -> Path:
        return self.agents_file or self.layout.agents

    @property
    def usable_cpus(self) -> int:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):  # not every platform has affinity
            return max(1, os.cpu_count() or 1)

    @property
    def effective_max_load(self) -> float:
        return self.max_load if self.max_load is not None else 1.5 * self.usable_cpus

    @property
    def model_chain(self) -> tuple[str, ...]:
        """Primary then fallbacks; the offline model when no provider is configured."""
        chain = ((self.primary_model,) if self.primary_model else ()) + self.fallback_model
        return chain or (OFFLINE_MODEL,)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every configured secret value, for the log redactor."""
        keys = (self.openai_api_key, self.anthropic_api_key, self.minimax_api_key)
        return tuple(k.get_secret_value() for k in keys if k and k.get_secret_value())

    def masked(self) -> dict[str, object]:
        """The effective settings with secrets masked, for ``swarmd config``."""
        shown: dict[str, object] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                secret = value.get_secret_value()
                shown[name] = "****" + secret[-4:] if len(secret) >= 12 else "****"
            elif isinstance(value, Path):
                shown[name] = str(value)
            elif isinstance(value, tuple):
                shown[name] = list(value)
            else:
                shown[name] = value
        shown["effective_max_load"] = self.effective_max_load
        shown["model_chain"] = list(self.model_chain)
        return shown


def load_settings(**overrides: Any) -> Settings:
    """Build ``Settings`` or raise ``ConfigError`` with one sentence naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        variable = _variable_name(field)
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"invalid setting {variable}: {message}") from exc


def _variable_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"SWARMD_{field.upper()}"


# -- variables that name no setting ---------------------------------------------------------

VARIABLES_SET_FOR_AGENTS = frozenset({"SWARMD_TICKET", "SWARMD_TASK"})
"""What swarmd sets in a command agent's environment: not settings, but not mistakes either."""


@dataclass(frozen=True, slots=True)
class UnknownVariable:
    """A ``SWARMD_*`` variable that no setting reads, where it was set, and the likely intent."""

    name: str
    source: str  # "the environment", or the .env file's path
    suggestion: str | None  # the closest valid name, if any is close

    def describe(self) -> str:
        hint = f"did you mean {self.suggestion}?" if self.suggestion else "it is not a setting"
        return f"{self.name} (in {self.source}) is ignored: {hint}"


def setting_variables() -> dict[str, str]:
    """Each setting's field name and the variable that sets it, in declaration order."""
    return {field: _variable_name(field) for field in Settings.model_fields}


def unknown_variables(
    environ: Mapping[str, str], env_file: Path | None = None
) -> list[UnknownVariable]:
    """Every ``SWARMD_*`` variable of ``environ`` and of the ``.env`` file (read from the
    current directory, as the settings read it) that no setting reads.

    Settings match their variables whatever the case, so ``swarmd_max_load`` is a setting
    and ``SWARMD_MAX_LOAD_AVG`` is not.
    """
    known = {name.upper() for name in setting_variables().values()}
    found: dict[tuple[str, str], None] = {}
    sources: list[tuple[str, Iterable[str]]] = [("the environment", environ)]
    dotenv = _dotenv_names(env_file)
    if dotenv is not None:
        sources.append(dotenv)
    for source, names in sources:
        for name in names:
            upper = name.upper()
            if upper.startswith(ENV_PREFIX) and upper not in known | VARIABLES_SET_FOR_AGENTS:
                found[(name, source)] = None
    return [UnknownVariable(name, source, _closest(name.upper(), known)) for name, source in found]


def _dotenv_names(env_file: Path | None) -> tuple[str, Iterable[str]] | None:
    if env_file is None:
        configured = Settings.model_config.get("env_file")
        if not isinstance(configured, str | os.PathLike):
            return None
        env_file = Path(configured)
    path = env_file.expanduser()
    # A FIFO is read by the settings themselves; reading it here first would empty it.
    if not path.is_file():
        return None
    try:
        values = dotenv_values(path, encoding=Settings.model_config.get("env_file_encoding"))
    except (OSError, UnicodeDecodeError):
        return None  # the settings report an unreadable .env themselves
    return str(path), list(values)


def _closest(name: str, known: Iterable[str]) -> str | None:
    # Compared without the prefix they all share, which would make every name look close.
    stems = {variable.removeprefix(ENV_PREFIX): variable for variable in sorted(known)}
    matches = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), stems, n=1, cutoff=0.6)
    return stems[matches[0]] if matches else None
