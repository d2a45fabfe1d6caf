"""The dashboard in a real browser (headless Chromium, driven by Playwright): the page loads
with no console error, shows a running worker, and follows a ticket to ``succeeded`` without
a reload."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import swarmd, write_ticket
from tests.support.dashboard import TOKEN, dashboard_daemon

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; never a browser Playwright downloads

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)"
    ),
    pytest.mark.timeout(240),
]

TICKET = {
    "title": "slow then done",
    "tasks": [
        {"name": "slow", "agent": "command", "command": ["sleep", "8"]},
        {"name": "after", "agent": "echo", "prompt": "done", "needs": ["slow"]},
    ],
}


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as driver:
        # Chromium's sandbox refuses to run as root, which CI is.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            yield launched
        finally:
            launched.close()


def test_the_page_follows_a_running_ticket_to_succeeded_without_a_reload(
    browser: Any, home: Path, tmp_path: Path, swarmd_env: dict[str, str]
) -> None:
    daemon, url = dashboard_daemon(swarmd_env, home, token=TOKEN)
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        problems: list[str] = []
        page.on(
            "console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None
        )
        page.on("pageerror", lambda error: problems.append(str(error)))
        loads: list[str] = []
        page.on("load", lambda p: loads.append(p.url))

        page.goto(f"{url}/?token={TOKEN}")
        page.wait_for_selector("#conn.live", timeout=20_000)
        submitted = swarmd("submit", str(write_ticket(tmp_path, TICKET)), env=swarmd_env)
        assert submitted.returncode == 0, submitted.stderr

        page.wait_for_selector("#workers-body td >> text=1.slow", timeout=30_000)
        page.wait_for_selector('.ticket[data-ticket="1"][data-state="running"]', timeout=30_000)
        assert page.locator('.task[data-task="slow"]').get_attribute("data-state") == "running"
        page.screenshot(path=str(tmp_path / "running.png"))

        page.wait_for_selector('.ticket[data-ticket="1"][data-state="succeeded"]', timeout=60_000)
        page.wait_for_selector("#workers-body >> text=no worker running", timeout=30_000)
        states = page.locator(".task").evaluate_all("chips => chips.map(c => c.dataset.state)")
        seen = list(problems)  # before the daemon stops and the stream breaks
    finally:
        daemon.stop()

    assert states == ["succeeded", "succeeded"]
    assert len(loads) == 1  # one page load: everything after it came over the event stream
    assert seen == []
