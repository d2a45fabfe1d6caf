"""Addresses a user gives in settings: providers' base URLs, a webhook, ``OLLAMA_HOST``.

Each check takes the value as the user wrote it and returns it (or its normal form), or
raises ``ValueError`` with the sentence that ``swarmd.config`` names the variable with. A
password in a URL is never quoted back.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

from swarmd.text import quote, unsafe_in_line

OLLAMA_PORT = 11434
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")


def check_base_url(value: str) -> str:
    """``value`` if it is an http(s) URL with a host and a valid port; else ``ValueError``."""
    shown = _shown_url(value)
    if unsafe_in_line(value) is not None or " " in value:
        raise ValueError(f"{shown} must be a URL without spaces or control characters")
    try:
        parts = urlsplit(value)
    except ValueError:  # an unclosed [
        raise ValueError(f"{shown} is not a valid URL") from None
    try:
        port = parts.port
    except ValueError:  # not a number, or past 65535
        raise ValueError(f"{shown} has no valid port (1-65535)") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{shown} must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError(f"{shown} names no host")
    if port == 0 or (parts.netloc.endswith(":") and port is None):
        raise ValueError(f"{shown} has no valid port (1-65535)")
    if parts.query or parts.fragment:
        raise ValueError(f"{shown} must not have a query or a fragment")
    return value


def check_webhook_url(value: str) -> str:
    """``value`` if it is an http(s) URL with a host and a valid port; else ``ValueError``.

    Like a base URL, but it may carry a query, and only its scheme and host are ever quoted
    back: a webhook's path and query often hold its token.
    """
    if unsafe_in_line(value) is not None or " " in value:
        raise ValueError("must be a URL without spaces or control characters")
    try:
        parts = urlsplit(value)
    except ValueError:  # an unclosed [
        raise ValueError("is not a valid URL") from None
    if parts.fragment:
        raise ValueError("must not have a fragment")
    check_base_url(urlunsplit((parts.scheme, parts.netloc, "", "", "")))
    return value


def normalise_ollama_host(value: str) -> str:
    """``OLLAMA_HOST`` as the URL Ollama itself makes of it, or ``ValueError``.

    Like Ollama: surrounding quotes and spaces go; no scheme means http and port 11434; an
    http:// or https:// URL without a port means its scheme's port; a bare IPv6 address
    (``::1``) needs no brackets. Unlike Ollama, a port that is not 1-65535 is refused rather
    than silently replaced. The URL keeps the scheme's own port implicit, as
    ``swarmd.llm.provider_config.ollama_base_url`` expects.
    """
    raw = value.strip().strip("\"'")
    if unsafe_in_line(raw) is not None or " " in raw or not raw:
        raise ValueError(f"{_shown_url(value)} must be a host or URL without spaces")
    scheme, has_scheme, rest = raw.partition("://")
    if not has_scheme:
        scheme, rest = "http", raw
    elif scheme not in ("http", "https"):
        raise ValueError(f"{_shown_url(value)} must be host[:port] or an http:// or https:// URL")
    hostport, _, path = rest.partition("/")
    if "@" in hostport:  # Ollama takes no user or password here
        raise ValueError(f"{_shown_url(value)} must be host[:port], without a user or password")
    host, port = _split_host_port(hostport, value)
    if port is None and not has_scheme:
        port = OLLAMA_PORT
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{scheme}://{netloc}" + (f"/{path.rstrip('/')}" if path.rstrip("/") else "")


def _split_host_port(hostport: str, value: str) -> tuple[str, int | None]:
    """Host and port, as Go's net.SplitHostPort and Ollama's fallback read them."""
    if hostport.startswith("["):
        host, closed, after = hostport[1:].partition("]")
        if not closed or (after and not after.startswith(":")):
            raise ValueError(f"{_shown_url(value)} has an unclosed or misplaced [")
        port_text: str | None = after[1:] if after else None
    elif hostport.count(":") == 1:
        host, _, port_text = hostport.partition(":")
    else:
        host, port_text = hostport, None  # a name, or a bare IPv6 address
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError:
            raise ValueError(f"{_shown_url(value)} has an invalid IPv6 address") from None
    elif host and not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{_shown_url(value)} has an invalid host name")
    port = None
    if port_text is not None:
        if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{_shown_url(value)} has an invalid port {quote(port_text, 20)}")
        port = int(port_text)
    return host or "127.0.0.1", port


def _shown_url(value: str) -> str:
    """``value`` quoted for a message, a password in it (``//user:pass@``) masked."""
    return quote(re.sub(r"//[^/@]*@", "//****@", value))


def is_database_url(value: str) -> bool:
    """Whether ``value`` names a PostgreSQL database rather than a SQLite file."""
    return value.startswith(("postgresql://", "postgres://"))


def check_database_url(value: str) -> str:
    """``value`` if it is a ``postgresql://`` URL with a host or a socket; else ``ValueError``.

    Only the masked form (``mask_database_url``) is ever quoted back.
    """
    shown = quote(mask_database_url(value))
    if unsafe_in_line(value) is not None or " " in value:
        raise ValueError(f"{shown} must be a URL without spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (a bad port raises here)
    except ValueError:
        raise ValueError(f"{shown} is not a valid URL") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"{shown} must start with postgresql://")
    if not parts.path.strip("/"):
        raise ValueError(f"{shown} must name a database (postgresql://HOST/DATABASE)")
    return value


def mask_database_url(value: str) -> str:
    """``value`` with any password in it (``user:password@``, ``password=``) replaced."""
    masked = re.sub(r"(//[^/@:]*):[^/@]*@", r"\1:****@", value)
    return re.sub(r"(password=)[^&\s]*", r"\1****", masked, flags=re.IGNORECASE)


MIN_DASHBOARD_TOKEN_CHARS = 16


def check_dashboard_host(value: str) -> str:
    """The address the dashboard binds: an IP address or ``localhost``; else ``ValueError``.

    A host name other than ``localhost`` is refused: what it resolves to (loopback or not)
    can change after the check.
    """
    host = value.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower() == "localhost":
        return "localhost"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(
            f"{quote(value, 80)} must be an IP address (127.0.0.1, ::1, 0.0.0.0) or localhost"
        ) from None


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (as ``check_dashboard_host`` returns it) is reachable from this
    machine alone."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_dashboard_token(value: str) -> str:
    """``value`` if it can stand as the dashboard's bearer token; else ``ValueError``.

    It travels in an ``Authorization`` header and a URL's query: visible ASCII that needs no
    escaping. The token itself is never quoted back.
    """
    if len(value) < MIN_DASHBOARD_TOKEN_CHARS:
        raise ValueError(f"must be at least {MIN_DASHBOARD_TOKEN_CHARS} characters long")
    if not re.fullmatch(r"[A-Za-z0-9._~+/=-]+", value):
        raise ValueError("must hold only letters, digits and . _ ~ + / = -")
    return value
