"""What a task may never commit: the deny rules, and their verdict on one file.

A file is refused when its name matches a denied pattern (and no allowed one), when it is
larger than the size limit, or when its content holds one of the secrets the daemon knows
(its provider keys, a forge token). Patterns without a ``/`` match the file's base name,
patterns with one match the whole path; both ignore case, since ``.ENV`` is still an env file.
A verdict names the rule, never the secret.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

DEFAULT_DENIED_NAMES = (".env", ".env.*", "*.pem", "*.key", "id_rsa*", "id_ed25519*")
DEFAULT_ALLOWED_NAMES = (".env.example",)
DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DenyRules:
    """The rules ``commit_task`` applies to every file a task adds or changes."""

    denied_names: tuple[str, ...] = DEFAULT_DENIED_NAMES
    allowed_names: tuple[str, ...] = DEFAULT_ALLOWED_NAMES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Exact strings searched for in each file's bytes (UTF-8); empty ones are ignored."""

    @property
    def scans_content(self) -> bool:
        """Whether any secret is to be searched for, so contents must be read."""
        return any(self.secrets)

    def name_problem(self, path: str) -> str | None:
        """Why ``path`` may not be committed by its name alone, or ``None``."""
        if any(_matches(path, pattern) for pattern in self.allowed_names):
            return None
        for pattern in self.denied_names:
            if _matches(path, pattern):
                return f"matches the deny pattern {pattern!r}"
        return None

    def size_problem(self, size: int) -> str | None:
        """Why a file of ``size`` bytes may not be committed, or ``None``."""
        if size > self.max_file_bytes:
            return f"is {size} bytes, over the limit of {self.max_file_bytes}"
        return None

    def content_problem(self, content: bytes) -> str | None:
        """Why a file with this content may not be committed, or ``None``."""
        for secret in self.secrets:
            if secret and secret.encode("utf-8") in content:
                return "contains a known secret"
        return None


def _matches(path: str, pattern: str) -> bool:
    subject = path if "/" in pattern else path.rsplit("/", 1)[-1]
    return fnmatch.fnmatchcase(subject.lower(), pattern.lower())
