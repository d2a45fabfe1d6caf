"""The dashboard's log tail on a real file: appended lines, a line written in two parts, a
rotation, a long history, and a secret in a line."""

from __future__ import annotations

import json
from pathlib import Path

from swarmd.daemon.dashboard.logtail import LogTail
from swarmd.logs import Redactor

SECRET = "hunter2-Kq9Vx7Lm3Pz"


def line(event: str, **fields: object) -> str:
    record = {"timestamp": "2026-12-01T10:00:00Z", "level": "info", "event": event, **fields}
    return json.dumps(record) + "\n"


def append(path: Path, text: str) -> None:
    with path.open("a") as file:
        file.write(text)


def events(lines: list[dict[str, object]]) -> list[object]:
    return [entry["event"] for entry in lines]


async def test_each_poll_returns_the_lines_appended_since_the_last(tmp_path: Path) -> None:
    path = tmp_path / "swarmd.jsonl"
    path.write_text(line("one"))
    tail = LogTail(path, Redactor())

    assert events(await tail.poll()) == ["one"]
    assert await tail.poll() == []
    append(path, line("two", task="1.a") + line("three"))
    new = await tail.poll()

    assert events(new) == ["two", "three"]
    assert new[0]["text"] == "task=1.a"
    assert events(tail.recent) == ["one", "two", "three"]


async def test_a_line_written_in_two_parts_comes_once_whole(tmp_path: Path) -> None:
    path = tmp_path / "swarmd.jsonl"
    path.write_text("")
    tail = LogTail(path, Redactor())
    await tail.poll()
    whole = line("split", detail="a b")

    append(path, whole[:20])
    assert await tail.poll() == []
    append(path, whole[20:])

    assert events(await tail.poll()) == ["split"]


async def test_after_a_rotation_the_new_file_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "swarmd.jsonl"
    path.write_text(line("old") * 5)
    tail = LogTail(path, Redactor())
    await tail.poll()

    path.rename(tmp_path / "swarmd.jsonl.1")
    path.write_text(line("new"))

    assert events(await tail.poll()) == ["new"]


async def test_a_long_log_gives_its_newest_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "swarmd.jsonl"
    path.write_text("".join(line(f"e{i}") for i in range(20_000)))
    tail = LogTail(path, Redactor(), keep=50)

    first = await tail.poll()

    assert first[-1]["event"] == "e19999"
    assert all(str(entry["event"]).startswith("e") for entry in first)  # no cut line
    assert len(tail.recent) == 50


async def test_secrets_and_plain_text_lines_are_scrubbed(tmp_path: Path) -> None:
    path = tmp_path / "swarmd.jsonl"
    path.write_text(line("leak", error=f"key {SECRET}") + f"Traceback with {SECRET}\n")

    text = json.dumps(await LogTail(path, Redactor([SECRET])).poll())

    assert SECRET not in text
    assert "[REDACTED]" in text and "Traceback with" in text
