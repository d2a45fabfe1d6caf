"""The registered repositories: ``repos.toml`` (``$SWARMD_HOME/repos.toml``, or
``SWARMD_REPOS_FILE``), and how a ticket's ``repo`` names one.

    [repos.app]
    path = "/srv/app"               # the person's checkout (never touched) or a bare repository
    base = "main"                   # what tickets start from unless they say ``base = ...``
    remote = "origin"               # where ``deliver = "push" | "pr"`` pushes
    deliver = "branch"              # branch | push | pr
    branch_prefix = "swarmd"        # task branches swarmd/<ticket>/<task>, ticket swarmd/<ticket>
    copy_ignored = [".env.example"] # gitignored files each worktree gets a copy of
    run_hooks = false               # the repository's own hooks on swarmd's commits
    max_file_mb = 10                # a task may not commit a file larger than this

    [repos.app.forge]               # for deliver = "pr"
    kind = "github"                 # github | gitea (Gitea and Forgejo)
    repository = "owner/app"
    api_url = "https://api.github.com"   # Gitea: the server's base URL
    token_env = "GITHUB_TOKEN"      # the daemon's variable holding the token (never the agents')

A ticket names an entry (``repo = "app"``) or an absolute path (``repo = "/srv/app"``), which
gets the defaults above with ``base = "HEAD"`` of that repository.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmd.errors import ConfigError, InputError

DELIVERIES = ("branch", "push", "pr")
FORGES = ("github", "gitea")


@dataclass(frozen=True, slots=True)
class ForgeEntry:
    kind: str
    repository: str  # owner/name
    api_url: str
    token_env: str


@dataclass(frozen=True, slots=True)
class RepoEntry:
    """One registered repository, with every default filled in."""

    name: str
    path: Path
    base: str = "HEAD"
    remote: str = "origin"
    deliver: str = "branch"
    branch_prefix: str = "swarmd"
    copy_ignored: tuple[str, ...] = ()
    run_hooks: bool = False
    max_file_mb: int = 10
    forge: ForgeEntry | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "path": str(self.path),
            "base": self.base,
            "remote": self.remote,
            "deliver": self.deliver,
            "branch_prefix": self.branch_prefix,
            "copy_ignored": list(self.copy_ignored),
            "run_hooks": self.run_hooks,
            "max_file_mb": self.max_file_mb,
        }
        if self.forge is not None:
            data["forge"] = {
                "kind": self.forge.kind,
                "repository": self.forge.repository,
                "api_url": self.forge.api_url,
                "token_env": self.forge.token_env,
            }
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RepoEntry:
        forge = data.get("forge")
        return cls(
            name=str(data["name"]),
            path=Path(data["path"]),
            base=str(data.get("base", "HEAD")),
            remote=str(data.get("remote", "origin")),
            deliver=str(data.get("deliver", "branch")),
            branch_prefix=str(data.get("branch_prefix", "swarmd")),
            copy_ignored=tuple(data.get("copy_ignored") or ()),
            run_hooks=bool(data.get("run_hooks", False)),
            max_file_mb=int(data.get("max_file_mb", 10)),
            forge=ForgeEntry(**forge) if isinstance(forge, dict) else None,
        )


@dataclass(frozen=True, slots=True)
class RepoRegistry:
    entries: dict[str, RepoEntry]

    def resolve(self, ref: str) -> RepoEntry:
        """The entry a ticket's ``repo`` names: a registered name, or an absolute path."""
        if ref in self.entries:
            return self.entries[ref]
        if ref.startswith("/"):
            return RepoEntry(name=Path(ref).name, path=Path(ref))
        known = ", ".join(sorted(self.entries)) or "none are registered"
        raise InputError(f"unknown repository {ref!r} (known: {known}; or give an absolute path)")


def load_repo_registry(path: Path) -> RepoRegistry:
    """Read ``repos.toml``; a missing file is an empty registry, a bad one a ``ConfigError``."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return RepoRegistry({})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the repository registry: {exc}") from exc
    repos = raw.get("repos", {})
    if not isinstance(repos, dict) or set(raw) - {"repos"}:
        raise ConfigError(f"{path}: expected only [repos.NAME] tables")
    return RepoRegistry({name: _entry(path, name, table) for name, table in repos.items()})


_ENTRY_FIELDS = {
    "path",
    "base",
    "remote",
    "deliver",
    "branch_prefix",
    "copy_ignored",
    "run_hooks",
    "max_file_mb",
    "forge",
}


def _entry(path: Path, name: str, table: object) -> RepoEntry:
    where = f"{path}: repos.{name}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - _ENTRY_FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}")
    repo_path = table.get("path")
    if not isinstance(repo_path, str) or not repo_path.startswith(("/", "~")):
        raise ConfigError(f"{where}: path must be an absolute path")
    deliver = table.get("deliver", "branch")
    if deliver not in DELIVERIES:
        raise ConfigError(f"{where}: deliver must be one of {', '.join(DELIVERIES)}")
    for field in ("base", "remote", "branch_prefix"):
        if field in table and (not isinstance(table[field], str) or not table[field].strip()):
            raise ConfigError(f"{where}: {field} must be a non-empty string")
    ignored = table.get("copy_ignored", [])
    if not isinstance(ignored, list) or not all(isinstance(p, str) for p in ignored):
        raise ConfigError(f"{where}: copy_ignored must be a list of paths")
    if any(p.startswith("/") or ".." in Path(p).parts for p in ignored):
        raise ConfigError(f"{where}: copy_ignored paths must stay inside the repository")
    max_mb = table.get("max_file_mb", 10)
    if not isinstance(max_mb, int) or isinstance(max_mb, bool) or max_mb < 1:
        raise ConfigError(f"{where}: max_file_mb must be a whole number of at least 1")
    if not isinstance(table.get("run_hooks", False), bool):
        raise ConfigError(f"{where}: run_hooks must be true or false")
    forge = _forge(where, table.get("forge"))
    if deliver == "pr" and forge is None:
        raise ConfigError(f'{where}: deliver = "pr" needs a [repos.{name}.forge] table')
    return RepoEntry(
        name=name,
        path=Path(repo_path).expanduser(),
        base=table.get("base", "HEAD"),
        remote=table.get("remote", "origin"),
        deliver=deliver,
        branch_prefix=table.get("branch_prefix", "swarmd"),
        copy_ignored=tuple(ignored),
        run_hooks=table.get("run_hooks", False),
        max_file_mb=max_mb,
        forge=forge,
    )


def _forge(where: str, table: object) -> ForgeEntry | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{where}.forge must be a table")
    kind = table.get("kind")
    if kind not in FORGES:
        raise ConfigError(f"{where}.forge: kind must be one of {', '.join(FORGES)}")
    default_url = "https://api.github.com" if kind == "github" else None
    api_url = table.get("api_url", default_url)
    repository = table.get("repository")
    token_env = table.get("token_env")
    if not isinstance(api_url, str) or not api_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.forge: api_url must be an http(s) URL")
    if not isinstance(repository, str) or repository.count("/") != 1:
        raise ConfigError(f"{where}.forge: repository must be owner/name")
    if not isinstance(token_env, str) or not token_env:
        raise ConfigError(f"{where}.forge: token_env must name the variable holding the token")
    return ForgeEntry(kind, repository, api_url, token_env)
