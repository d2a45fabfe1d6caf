"""repos.toml: registered repositories with their defaults, and every mistake in one sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmd.errors import ConfigError, InputError
from swarmd.git.registry import RepoEntry, load_repo_registry


def registry_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "repos.toml"
    path.write_text(text)
    return path


def test_a_missing_file_is_an_empty_registry(tmp_path: Path) -> None:
    assert load_repo_registry(tmp_path / "absent.toml").entries == {}


def test_an_entry_gets_every_default(tmp_path: Path) -> None:
    registry = load_repo_registry(registry_file(tmp_path, '[repos.app]\npath = "/srv/app"\n'))
    assert registry.resolve("app") == RepoEntry(name="app", path=Path("/srv/app"))


def test_an_entry_round_trips_through_its_dict(tmp_path: Path) -> None:
    text = """
[repos.app]
path = "/srv/app"
base = "main"
deliver = "pr"
copy_ignored = [".env.example"]
[repos.app.forge]
kind = "gitea"
repository = "team/app"
api_url = "http://127.0.0.1:3000"
token_env = "GITEA_TOKEN"
"""
    entry = load_repo_registry(registry_file(tmp_path, text)).resolve("app")
    assert RepoEntry.from_dict(entry.to_dict()) == entry
    assert entry.forge is not None and entry.forge.repository == "team/app"


def test_an_absolute_path_needs_no_entry(tmp_path: Path) -> None:
    entry = load_repo_registry(tmp_path / "absent.toml").resolve("/srv/other")
    assert (entry.name, entry.path, entry.base) == ("other", Path("/srv/other"), "HEAD")


def test_an_unknown_name_is_bad_input_naming_the_known_ones(tmp_path: Path) -> None:
    registry = load_repo_registry(registry_file(tmp_path, '[repos.app]\npath = "/srv/app"\n'))
    with pytest.raises(InputError, match=r"unknown repository 'web' \(known: app"):
        registry.resolve("web")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[repos.app]\nbase = 'main'\n", "path must be an absolute path"),
        ("[repos.app]\npath = 'relative'\n", "path must be an absolute path"),
        ("[repos.app]\npath = '/a'\ndeliver = 'email'\n", "deliver must be one of"),
        ("[repos.app]\npath = '/a'\ndeliver = 'pr'\n", "needs a \\[repos.app.forge\\] table"),
        ("[repos.app]\npath = '/a'\ncolour = 'red'\n", "unknown field 'colour'"),
        ("[repos.app]\npath = '/a'\ncopy_ignored = ['../x']\n", "stay inside the repository"),
        ("[repos.app]\npath = '/a'\nmax_file_mb = 0\n", "max_file_mb must be"),
        ("[repos.app]\npath = '/a'\n[repos.app.forge]\nkind = 'svn'\n", "kind must be one of"),
        ("[other]\nx = 1\n", "expected only \\[repos.NAME\\] tables"),
        ("[repos.app\n", "cannot read the repository registry"),
    ],
)
def test_a_bad_registry_is_one_sentence(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_repo_registry(registry_file(tmp_path, text))
