"""Fixtures for the repository layer: a person's real repository and swarmd's runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swarmd.git import GitRunner, Repository
from tests.support.repos import Person, write


@pytest.fixture
def person(tmp_path: Path) -> Person:
    home = tmp_path / "home"
    home.mkdir()
    return Person(home)


@pytest.fixture
def runner(person: Person) -> GitRunner:
    return GitRunner(inherited_env={"PATH": os.environ["PATH"], "HOME": str(person.home)})


@pytest.fixture
def project(tmp_path: Path, person: Person, runner: GitRunner) -> Repository:
    """The person's checkout of a small project, on ``main``, with one commit."""
    path = tmp_path / "project"
    person.git(tmp_path, "init", "--quiet", "--initial-branch=main", str(path))
    write(path / "README.md", "# Project\n")
    write(path / "app.py", "print('hello')\n")
    person.commit_all(path, "Initial commit")
    return Repository.open(path, runner=runner, lock_timeout=30)


@pytest.fixture
def base(project: Repository) -> str:
    """The pinned base commit of the ticket."""
    return project.resolve_commit("main")


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    """Where swarmd puts task worktrees, outside the person's checkout."""
    return tmp_path / "work"
