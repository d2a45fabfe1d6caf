"""Which command lines skip typer: the plain forms of ``submit`` and ``run-ticket`` only."""

from __future__ import annotations

import pytest

from swarmd.cli.waiting import plain_form


@pytest.mark.parametrize(
    "argv",
    [
        ["submit", "t.toml"],
        ["submit", "t.toml", "--wait"],
        ["submit", "--wait", "t.toml"],
        ["submit", "--json", "t.toml", "--wait"],
        ["run-ticket", "t.toml"],
        ["run-ticket", "12", "--wait"],
        ["run-ticket", "--wait", "t.toml"],
    ],
)
def test_plain_forms_run_without_typer(argv: list[str]) -> None:
    assert plain_form(argv) is not None


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["status"],
        ["submit"],
        ["submit", "--wait"],
        ["submit", "a.toml", "b.toml"],
        ["submit", "t.toml", "--help"],
        ["submit", "t.toml", "--wait", "--wait"],
        ["submit", "t.toml", "--priority", "3"],
        ["submit", "t.toml", "--priority=3"],
        ["submit", "t.toml", "--key", "k"],
        ["submit", "--", "t.toml"],
        ["submit", "-", "--wait"],
        ["submit", "t.toml", "-w"],
        ["run-ticket", "t.toml", "--json"],
        ["run-ticket", "t.toml", "--timeout", "5"],
        ["run-ticket", "12", "--wait", "--priority", "1"],
        ["Submit", "t.toml"],
    ],
)
def test_every_other_form_goes_through_typer(argv: list[str]) -> None:
    assert plain_form(argv) is None


def test_shell_completion_goes_through_typer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_SWARMD_COMPLETE", "bash_complete")
    assert plain_form(["submit", "t.toml"]) is None
