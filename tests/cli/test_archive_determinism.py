"""The same outputs give byte-identical task archives, whichever ticket, attempt or run made
them: two tickets of the same echo and llm tasks, run one after the other through the CLI, the
fake provider answering both alike (the first only after a failed request)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

from tests.support.cli import swarmd
from tests.support.fake_llm import FakeLLMServer, Fault
from tests.support.llm_env import PRIMARY_WIRE, last_results, run_ticket

TASKS = ("greet", "page")


def same_work(title: str) -> dict[str, Any]:
    return {
        "title": title,
        "tasks": [
            {"name": "greet", "agent": "echo", "prompt": "Hello from the swarm"},
            {"name": "page", "agent": "llm", "needs": ["greet"], "prompt": "Write the page"},
        ],
    }


def delivered_files(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {
            member.name: tar.extractfile(member).read()  # type: ignore[union-attr]
            for member in tar.getmembers()
            if member.name.startswith("files/")
        }


def test_two_tickets_of_the_same_work_give_byte_identical_task_archives(
    tmp_path: Path, llm_env: dict[str, str], home: Path, fake_llm: FakeLLMServer
) -> None:
    fake_llm.script(PRIMARY_WIRE, Fault.http(500))  # the first run retries once: other tries

    first = run_ticket(tmp_path, llm_env, same_work("first"))
    second = run_ticket(tmp_path, llm_env, same_work("second"))

    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    firsts, seconds = last_results(home, 1), last_results(home, 2)
    assert len(firsts["page"]["tries"]) == 2
    assert len(seconds["page"]["tries"]) == 1
    for task in TASKS:
        one = home / "outputs" / "1" / f"{task}.tar.gz"
        two = home / "outputs" / "2" / f"{task}.tar.gz"
        assert one.read_bytes() == two.read_bytes(), task
        assert firsts[task]["archive"]["sha256"] == seconds[task]["archive"]["sha256"]
    delivery_one = delivered_files(home / "outputs" / "1" / "delivery.tar.gz")
    delivery_two = delivered_files(home / "outputs" / "2" / "delivery.tar.gz")
    assert delivery_one == delivery_two
    assert set(delivery_one) == {"files/greet.txt", "files/answer.md", "files/response.md"}


def test_run_metadata_stays_in_the_attempts_result_and_archives_still_verify(
    tmp_path: Path, llm_env: dict[str, str], home: Path, fake_llm: FakeLLMServer
) -> None:
    result = run_ticket(tmp_path, llm_env, same_work("one"))

    assert result.returncode == 0, result.stdout + result.stderr
    archive = home / "outputs" / "1" / "page.tar.gz"
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert {"task": "page", "agent": "llm"}.items() <= manifest.items()
    for run_key in ("ticket", "attempt", "started_at", "model", "tries", "usage", "latency_s"):
        assert run_key not in manifest
    page = last_results(home)["page"]
    assert page["model"] and page["tries"] and page["usage"]
    for path in (archive, home / "outputs" / "1" / "delivery.tar.gz"):
        checked = swarmd("verify-archive", str(path), env=llm_env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
