"""The README states the contract the code keeps: every exit reason, the timeout's exit code."""

from __future__ import annotations

import re
from pathlib import Path

from swarmd.models import ExitReason

README = Path(__file__).resolve().parents[2] / "README.md"


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"### {title}\n")
    end = text.find("\n##", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_readme_lists_every_exit_reason_the_code_can_record() -> None:
    table = section("When a task fails")
    listed = set(re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE))

    assert listed == {reason.value for reason in ExitReason}


def test_readme_gives_run_ticket_timeout_exit_code_1() -> None:
    text = " ".join(README.read_text(encoding="utf-8").split())

    assert (
        "`1` the ticket failed or was cancelled, or did not finish within `run-ticket --timeout`"
        in text
    )
