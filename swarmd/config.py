"""Settings: read once at the edge from ``SWARMD_*`` variables and ``.env``, then handed down.

Library modules never read ``os.environ``; they take a ``Settings`` (or the plain values
they need) from the composition root.

Every invalid value is a ``ConfigError`` with one sentence naming the variable the user set
(``OPENAI_BASE_URL``, not a field name) and quoting the value (never a secret's). Also:

- an empty variable is the same as an unset one (``SWARMD_HOME=`` means the default home);
- numbers are finite and bounded: ``inf``, ``nan`` and ``1e999`` are refused;
- paths expand ``~``, and a relative path is resolved against the current directory when
  the settings are loaded, so every process of swarmd agrees on it;
- base URLs are http(s) URLs with a host and a valid port; ``OLLAMA_HOST`` takes every form
  Ollama takes (``host``, ``host:port``, ``::1``, ``[::1]:11434``, with or without a scheme)
  and is kept as a URL;
- ``.env`` (in the current directory) must be a regular UTF-8 file of at most 1 MiB.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import stat
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from swarmd.addresses import (
    check_base_url,
    check_dashboard_host,
    check_dashboard_token,
    check_database_url,
    check_webhook_url,
    is_loopback_host,
    mask_database_url,
    normalise_ollama_host,
)
from swarmd.errors import ConfigError
from swarmd.home import HomeLayout
from swarmd.models import AlertEvent
from swarmd.text import plain_or_quoted, quote, unsafe_in_line

OFFLINE_MODEL = "echo/echo"
ENV_FILE = ".env"
MAX_ENV_FILE_BYTES = 2**20

MAX_SECONDS = 365 * 24 * 3600.0
"""The longest any duration may be: a year."""
MAX_MEGABYTES = 2**24
"""16 TiB, in MB: more memory than any host swarmd runs on."""
MAX_RETENTION_DAYS = 36_500
"""A hundred years: the longest anything is kept before 0 (for ever) says so plainly."""

_SECRET_FIELDS = frozenset(
    {
        "openai_api_key",
        "anthropic_api_key",
        "minimax_api_key",
        "webhook_url",
        "webhook_secret",
        "database_url",
        "dashboard_token",
    }
)
ENV_PREFIX = "SWARMD_"


def default_home() -> Path:
    """``$STATE_DIRECTORY`` under systemd, else ``~/.local/state/swarmd``."""
    state_dir = os.environ.get("STATE_DIRECTORY")
    if state_dir:
        # systemd may pass several colon-separated directories; the first is ours.
        return Path(state_dir.split(":")[0])
    try:
        user_home = Path.home()
    except (RuntimeError, KeyError) as exc:  # no $HOME and no passwd entry
        raise ConfigError("cannot find the home directory: set SWARMD_HOME") from exc
    if not user_home.is_absolute():  # HOME="" or a relative HOME
        raise ConfigError(
            f"$HOME is {quote(str(user_home))}, not an absolute path: set SWARMD_HOME"
        )
    return user_home / ".local" / "state" / "swarmd"


def _provider_field(*names: str) -> Any:
    return Field(default=None, validation_alias=AliasChoices(*names))


class Settings(BaseSettings):
    """Every setting of swarmd, with its default. See ``.env.example`` for one line on each."""

    model_config = SettingsConfigDict(
        env_prefix="SWARMD_",
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        validate_default=True,
        allow_inf_nan=False,
    )

    home: Path = Field(default_factory=default_home)
    max_concurrent_workers: int = Field(default=10, ge=1, le=1000)
    min_free_memory_mb: int = Field(default=1024, ge=0, le=MAX_MEGABYTES)
    min_free_disk_mb: int = Field(default=512, ge=0, le=MAX_MEGABYTES)
    max_load: float | None = Field(default=None, gt=0, le=100_000)
    worker_memory_limit_mb: int | None = Field(default=None, ge=1, le=MAX_MEGABYTES)
    worker_timeout_seconds: float = Field(default=3600.0, gt=0, le=MAX_SECONDS)
    worker_heartbeat_seconds: float = Field(default=5.0, gt=0, le=3600)
    worker_hung_seconds: float = Field(default=60.0, gt=0, le=MAX_SECONDS)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0, le=3600)
    spawn_settle_seconds: float = Field(default=1.0, ge=0, le=3600)
    worker_start: Literal["fork", "exec"] = "fork"
    api_rate_limit_rpm: int = Field(default=20, ge=1, le=1_000_000)
    primary_model: str | None = None
    fallback_model: Annotated[tuple[str, ...], NoDecode] = ()
    fallback_on_rate_limit: bool = True
    model_aliases: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    model_prices: Annotated[
        dict[str, tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]]], NoDecode
    ] = Field(default_factory=dict)
    llm_request_timeout_seconds: float = Field(default=600.0, gt=0, le=MAX_SECONDS)
    max_attempts: int = Field(default=3, ge=1, le=100)
    retry_backoff_seconds: float = Field(default=5.0, ge=0, le=MAX_SECONDS)
    retry_backoff_max_seconds: float = Field(default=300.0, ge=0, le=MAX_SECONDS)
    max_fix_rounds: int = Field(default=2, ge=0, le=20)
    agents_file: Path | None = None
    repos_file: Path | None = None
    log_level: str = "info"
    log_max_bytes: int = Field(default=50 * 1024 * 1024, ge=4096, le=2**40)
    log_backups: int = Field(default=3, ge=0, le=1000)
    retention_workspaces_days: int = Field(default=7, ge=0, le=MAX_RETENTION_DAYS)
    retention_attempt_logs_days: int = Field(default=30, ge=0, le=MAX_RETENTION_DAYS)
    retention_archives_days: int = Field(default=30, ge=0, le=MAX_RETENTION_DAYS)
    retention_deliveries_days: int = Field(default=90, ge=0, le=MAX_RETENTION_DAYS)
    retention_tickets_days: int = Field(default=365, ge=0, le=MAX_RETENTION_DAYS)
    database_url: SecretStr | None = None  # postgresql://: a fleet's shared queue
    lease_seconds: float = Field(default=30.0, ge=2, le=3600)
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_textfile: Path | None = None
    notify_command: Annotated[tuple[str, ...], NoDecode] = ()
    webhook_url: SecretStr | None = None  # a webhook's URL often holds its token
    webhook_secret: SecretStr | None = None
    notify_events: Annotated[tuple[AlertEvent, ...], NoDecode] = tuple(AlertEvent)
    notify_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    notify_attempts: int = Field(default=4, ge=1, le=100)
    notify_gate_held_minutes: float = Field(default=10.0, gt=0, le=MAX_SECONDS / 60)
    dashboard_port: int | None = Field(default=None, ge=0, le=65535)
    # Before the host: the host's check reads it.
    dashboard_token: SecretStr | None = None
    dashboard_host: str = "127.0.0.1"

    openai_api_key: SecretStr | None = _provider_field("OPENAI_API_KEY")
    openai_base_url: str | None = _provider_field("OPENAI_BASE_URL")
    anthropic_api_key: SecretStr | None = _provider_field("ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = _provider_field("ANTHROPIC_BASE_URL")
    minimax_api_key: SecretStr | None = _provider_field("MINIMAX_API_KEY")
    minimax_base_url: str | None = _provider_field("MINIMAX_BASE_URL")
    ollama_host: str | None = _provider_field("OLLAMA_HOST")

    @field_validator("home", "agents_file", "repos_file", "metrics_textfile", mode="before")
    @classmethod
    def _absolute_path(cls, value: object) -> object:
        if value is None:
            return None
        text = os.fspath(value) if isinstance(value, str | os.PathLike) else value
        if not isinstance(text, str):
            return value  # pydantic names the wrong type
        if "\0" in text:
            raise ValueError("must not hold a NUL character")
        expanded = os.path.expanduser(text)
        if expanded.startswith("~"):
            raise ValueError(f"{quote(text)} starts with ~ but names no known user")
        try:
            return Path(expanded).absolute()  # against the current directory, once, now
        except OSError as exc:  # the current directory was removed
            raise ValueError(
                f"{quote(text)} is relative and the current directory is gone"
            ) from exc

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
                if not sep or not _is_plain_name(alias) or not _is_plain_name(provider):
                    raise ValueError(f"{quote(pair)} is not alias=provider")
                aliases[alias.strip()] = provider.strip()
            return aliases
        return value

    @field_validator("model_prices", mode="before")
    @classmethod
    def _decode_prices(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except (ValueError, RecursionError):
                raise ValueError(
                    'must be JSON like {"provider/model": [input, output]} '
                    f"(US dollars per million tokens), not {quote(value)}"
                ) from None
        return value

    @field_validator("primary_model", "fallback_model")
    @classmethod
    def _check_model_names(cls, value: object) -> object:
        names = value if isinstance(value, tuple) else (value,) if value else ()
        for name in names:
            assert isinstance(name, str)
            provider, _, model = name.partition("/")
            if not provider or not model or not _is_plain_name(name):
                raise ValueError(f"model {quote(name)} must be named provider/model")
        return value

    @field_validator("openai_api_key", "anthropic_api_key", "minimax_api_key")
    @classmethod
    def _check_key(cls, value: SecretStr | None) -> SecretStr | None:
        # A key travels in an HTTP header: only visible ASCII fits. Its value is never shown.
        secret = value.get_secret_value() if value is not None else ""
        for position, char in enumerate(secret, start=1):
            if not "!" <= char <= "~":
                raise ValueError(
                    f"the key holds U+{ord(char):04X} at character {position}; "
                    "an API key is visible ASCII without spaces"
                )
        return value

    @field_validator("openai_base_url", "anthropic_base_url", "minimax_base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return check_base_url(value)

    @field_validator("notify_command", mode="before")
    @classmethod
    def _split_command(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return tuple(shlex.split(value))
        except ValueError as exc:  # an unclosed quote
            raise ValueError(f"{quote(value)} is not a command line: {exc}") from None

    @field_validator("notify_events", mode="before")
    @classmethod
    def _split_events(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        names = [part.strip().lower() for part in value.split(",") if part.strip()]
        if "all" in names:
            return tuple(AlertEvent)
        known = {event.value for event in AlertEvent}
        for name in names:
            if name not in known:
                raise ValueError(
                    f"{quote(name)} is not an event; the events are all, "
                    + ", ".join(sorted(known))
                )
        return tuple(dict.fromkeys(AlertEvent(name) for name in names))

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_database_url(value.get_secret_value())
        return value

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_webhook_url(value.get_secret_value())
        return value

    @field_validator("dashboard_token")
    @classmethod
    def _check_dashboard_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_dashboard_token(value.get_secret_value())
        return value

    @field_validator("dashboard_host")
    @classmethod
    def _check_dashboard_host(cls, value: str, info: ValidationInfo) -> str:
        host = check_dashboard_host(value)
        # A token that failed its own check is missing from ``info.data``: that error is
        # the one reported. An unset token is there, as None.
        token_unset = "dashboard_token" in info.data and info.data["dashboard_token"] is None
        if token_unset and not is_loopback_host(host):
            raise ValueError(
                f"{quote(value)} is not a loopback address, so SWARMD_DASHBOARD_TOKEN "
                "must be set: every request then has to carry it"
            )
        return host

    @field_validator("ollama_host")
    @classmethod
    def _normalise_ollama_host(cls, value: str | None) -> str | None:
        return None if value is None else normalise_ollama_host(value)

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError(
                f"must be one of debug, info, warning, error, critical, not {quote(value)}"
            )
        return level

    @property
    def layout(self) -> HomeLayout:
        """Every path under the home."""
        return HomeLayout(self.home)

    @property
    def store_location(self) -> Path | str:
        """The queue: the home's SQLite file, or the fleet's PostgreSQL database."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return self.layout.database

    @property
    def store_exists(self) -> bool:
        """Whether the queue has been created: a shared database always is (by whoever
        connected first); a home's file only once something was submitted."""
        location = self.store_location
        return location.exists() if isinstance(location, Path) else True

    @property
    def agents_path(self) -> Path:
        return self.agents_file or self.layout.agents

    @property
    def repos_path(self) -> Path:
        return self.repos_file or self.layout.repos

    @property
    def dashboard_enabled(self) -> bool:
        """Whether the daemon serves the dashboard: a port is set, and it is not 0."""
        return bool(self.dashboard_port)

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
        keys = (
            self.openai_api_key,
            self.anthropic_api_key,
            self.minimax_api_key,
            self.webhook_url,
            self.webhook_secret,
            self.database_url,
            self.dashboard_token,
        )
        found = [k.get_secret_value() for k in keys if k and k.get_secret_value()]
        if self.database_url is not None:
            with contextlib.suppress(ValueError):
                found.append(urlsplit(self.database_url.get_secret_value()).password or "")
        return tuple(secret for secret in found if secret)

    def masked(self) -> dict[str, object]:
        """The effective settings with secrets masked, for ``swarmd config``."""
        shown: dict[str, object] = {}
        for name, value in self.model_dump().items():
            if name == "database_url" and isinstance(value, SecretStr):
                shown[name] = mask_database_url(value.get_secret_value())
            elif isinstance(value, SecretStr):
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
    check_env_file(Path(ENV_FILE))
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_invalid(exc)) from exc
    except SettingsError as exc:  # a value pydantic-settings could not decode at all
        field = re.search(r'field "(\w+)"', str(exc))
        variable = variable_name(field.group(1)) if field else "a setting"
        raise ConfigError(f"invalid setting {variable}: cannot decode its value") from exc
    except UnicodeDecodeError as exc:  # .env changed since check_env_file read it
        raise ConfigError(f"cannot read settings from {_shown_env_file()}: not UTF-8") from exc
    except OSError as exc:
        raise ConfigError(
            f"cannot read settings from {_shown_env_file()}: {exc.strerror or exc}"
        ) from exc


def describe_invalid(exc: ValidationError) -> str:
    """The first error of ``exc`` as one sentence: the variable, what is wrong, the value."""
    first = exc.errors()[0]
    loc = first["loc"]
    field = str(loc[0]) if loc else "?"
    variable = variable_name(field)
    message = first["msg"].removeprefix("Value error, ")
    message = re.sub(r"^Input should\b", "must", message)
    where = "".join(
        f"[{part}]" if isinstance(part, int) else f"[{quote(str(part), 40)}]" for part in loc[1:]
    )
    if where:
        message = f"entry {where} {message}"
    value = first.get("input")
    # swarmd's own checks quote what they refuse; pydantic's do not. A secret is never shown.
    shown = field_name(field) not in _SECRET_FIELDS and isinstance(value, str)
    if shown and len(loc) == 1 and first["type"] != "value_error":
        message += f" (the value is {quote(str(value))})"
    return f"invalid setting {variable}: {message}"


def variable_name(field: str) -> str:
    """The variable users set for ``field``, itself the field's name or one of its aliases."""
    name = field_name(field)
    info = Settings.model_fields.get(name)
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"SWARMD_{name.upper()}"


def field_name(name: str) -> str:
    """The field an error location names: itself, or the field whose alias it is."""
    if name in Settings.model_fields:
        return name
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices) and name in alias.choices:
            return field
    return name


def check_env_file(path: Path) -> None:
    """Refuse a ``.env`` that is not a regular UTF-8 file of at most ``MAX_ENV_FILE_BYTES``.

    pydantic-settings would read a FIFO (and wait for a writer forever) and tracebacks on
    bytes that are not UTF-8. A missing ``.env``, or a directory (a virtualenv named
    ``.env``), is no ``.env`` at all.
    """
    try:
        # O_NONBLOCK: a FIFO opens at once, to be refused, rather than waiting for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot read settings from {_shown_env_file()}: {exc.strerror}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            return  # pydantic-settings reads regular files and FIFOs only
        if not stat.S_ISREG(mode):
            raise ConfigError(
                f"cannot read settings from {_shown_env_file()}: it is not a regular file"
            )
        with open(fd, "rb", closefd=False) as file:
            raw = file.read(MAX_ENV_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_ENV_FILE_BYTES:
        raise ConfigError(f"cannot read settings from {_shown_env_file()}: it is over 1 MiB")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"cannot read settings from {_shown_env_file()}: not valid UTF-8 "
            f"(byte 0x{raw[exc.start]:02x} on line {line})"
        ) from exc


def _is_plain_name(text: str) -> bool:
    text = text.strip()
    return bool(text) and unsafe_in_line(text) is None and " " not in text and len(text) <= 200


def _shown_env_file() -> str:
    try:
        return plain_or_quoted(os.path.abspath(ENV_FILE), 1024)
    except OSError:  # the current directory was removed
        return ENV_FILE
