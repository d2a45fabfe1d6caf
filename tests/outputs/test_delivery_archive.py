"""Delivery archives: a ticket's merged outputs, with manifests that match them exactly."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest

from swarmd.errors import OutputError
from swarmd.outputs import (
    TaskArchiveRef,
    verify_archive,
    write_delivery_archive,
    write_task_archive,
)

TICKET = {"id": 42, "title": "Landing page", "state": "succeeded"}


def task_archive(root: Path, name: str, files: dict[str, bytes]) -> TaskArchiveRef:
    workspace = root / "work" / name
    for relpath, content in files.items():
        path = workspace / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    workspace.mkdir(parents=True, exist_ok=True)
    info = write_task_archive(
        workspace, root / "outputs" / f"{name}.tar.gz", manifest={"task": name}
    )
    return TaskArchiveRef(name=name, state="succeeded", archive=info.path)


def contents(archive: Path) -> tuple[dict[str, bytes], dict[str, Any], str]:
    """The files under files/, manifest.json and manifest.txt, read with tarfile alone."""
    with tarfile.open(archive) as tar:
        read = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    files = {
        name.removeprefix("files/"): data
        for name, data in read.items()
        if name.startswith("files/")
    }
    return files, json.loads(read["manifest.json"]), read["manifest.txt"].decode()


def ticket_of(root: Path, count: int) -> tuple[list[TaskArchiveRef], dict[str, bytes]]:
    """``count`` tasks: each writes its own file and its version of two shared ones."""
    refs: list[TaskArchiveRef] = []
    expected: dict[str, bytes] = {}
    for i in range(count):
        files = {
            f"task{i}/own.txt": f"task {i}\n".encode() * (i + 1),
            "shared/README.md": f"readme from task {i}\n".encode(),
            f"pair{i // 2}.bin": os.urandom(100 + i),
        }
        refs.append(task_archive(root, f"t{i}", files))
        expected.update(files)  # a later task's file replaces an earlier one's
    return refs, expected


@pytest.mark.parametrize("count", [1, 5, 50])
def test_manifest_matches_the_merged_files_exactly(tmp_path: Path, count: int) -> None:
    refs, expected = ticket_of(tmp_path, count)
    info = write_delivery_archive(tmp_path / "delivery.tar.gz", refs, ticket=TICKET)
    files, manifest, _ = contents(info.path)
    assert files == expected
    listed = {entry["path"]: (entry["size"], entry["sha256"]) for entry in manifest["files"]}
    assert listed == {
        path: (len(data), hashlib.sha256(data).hexdigest()) for path, data in files.items()
    }
    assert manifest["file_count"] == info.file_count == len(expected)
    assert manifest["total_bytes"] == info.total_bytes == sum(map(len, expected.values()))
    assert [task["name"] for task in manifest["tasks"]] == [ref.name for ref in refs]
    assert verify_archive(info.path) == []


@pytest.mark.parametrize("count", [1, 5, 50])
def test_each_replacement_is_listed(tmp_path: Path, count: int) -> None:
    refs, _ = ticket_of(tmp_path, count)
    info = write_delivery_archive(tmp_path / "delivery.tar.gz", refs, ticket=TICKET)
    _, manifest, _ = contents(info.path)
    readme = [
        {"path": "shared/README.md", "task": f"t{i}", "replaced": f"t{i - 1}"}
        for i in range(1, count)
    ]
    pairs = [
        {"path": f"pair{i // 2}.bin", "task": f"t{i}", "replaced": f"t{i - 1}"}
        for i in range(1, count, 2)
    ]
    key = lambda entry: (entry["task"], entry["path"])  # noqa: E731
    assert sorted(manifest["replaced"], key=key) == sorted(readme + pairs, key=key)


def test_file_comes_from_the_last_task_that_wrote_it(tmp_path: Path) -> None:
    refs = [
        task_archive(tmp_path, "copy", {"index.md": b"draft", "notes.txt": b"n"}),
        task_archive(tmp_path, "edit", {"index.md": b"final"}),
    ]
    info = write_delivery_archive(tmp_path / "delivery.tar.gz", refs, ticket=TICKET)
    files, manifest, _ = contents(info.path)
    assert files == {"index.md": b"final", "notes.txt": b"n"}
    assert {entry["path"]: entry["task"] for entry in manifest["files"]} == {
        "index.md": "edit",
        "notes.txt": "copy",
    }


def test_same_task_archives_give_byte_identical_deliveries(tmp_path: Path) -> None:
    refs, _ = ticket_of(tmp_path, 5)
    first = write_delivery_archive(tmp_path / "a.tar.gz", refs, ticket=TICKET)
    second = write_delivery_archive(tmp_path / "b.tar.gz", refs, ticket=TICKET)
    assert first.path.read_bytes() == second.path.read_bytes()


def test_failed_ticket_delivers_what_succeeded_and_says_what_did_not(tmp_path: Path) -> None:
    refs = [
        task_archive(tmp_path, "copy", {"index.md": b"# Hi\n"}),
        TaskArchiveRef(name="html", state="dead", error="every model failed:\n 429, 529"),
        TaskArchiveRef(name="check", state="skipped"),
    ]
    ticket = {**TICKET, "state": "failed"}
    info = write_delivery_archive(tmp_path / "delivery.tar.gz", refs, ticket=ticket)
    files, manifest, text = contents(info.path)
    assert files == {"index.md": b"# Hi\n"}
    assert [(t["name"], t["state"], t["archive"], t["delivered"]) for t in manifest["tasks"]] == [
        ("copy", "succeeded", "copy.tar.gz", 1),
        ("html", "dead", None, 0),
        ("check", "skipped", None, 0),
    ]
    assert "  html   dead       delivered nothing: every model failed: 429, 529" in text
    assert "  check  skipped    delivered nothing" in text


def test_manifest_txt_gives_people_the_counts(tmp_path: Path) -> None:
    refs = [
        task_archive(tmp_path, "copy", {"index.md": b"x" * 2048}),
        task_archive(tmp_path, "html", {"index.md": b"y" * 1024, "index.html": b"<p>"}),
    ]
    info = write_delivery_archive(tmp_path / "delivery.tar.gz", refs, ticket=TICKET)
    _, _, text = contents(info.path)
    assert text.splitlines()[:3] == [
        "Ticket 42: Landing page",
        "State: succeeded",
        "2 tasks, 2 files, 1 KiB in all",
    ]
    assert "  copy  succeeded  0 files, 0 bytes (1 replaced by later tasks)" in text
    assert "  index.md: html replaced copy" in text
    assert "  index.html  3 bytes  from html" in text


def test_ticket_with_no_outputs_delivers_an_empty_archive(tmp_path: Path) -> None:
    refs = [TaskArchiveRef(name="only", state="cancelled")]
    info = write_delivery_archive(tmp_path / "delivery.tar.gz", refs, ticket=TICKET)
    assert info.file_count == 0
    assert verify_archive(info.path) == []


def test_damaged_task_archive_fails_the_delivery_and_leaves_nothing(tmp_path: Path) -> None:
    good = task_archive(tmp_path, "good", {"a.txt": b"a"})
    bad = task_archive(tmp_path, "bad", {"b.txt": b"original"})
    assert bad.archive is not None
    forged = tmp_path / "forged.tar.gz"
    with tarfile.open(bad.archive) as old, tarfile.open(forged, "w:gz") as new:
        for member in old.getmembers():
            data = old.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "files/b.txt":
                data = b"ORIGINAL"
            new.addfile(member, io.BytesIO(data))
    os.replace(forged, bad.archive)
    dest = tmp_path / "out" / "delivery.tar.gz"
    damaged = 'the archive of task "bad" is damaged: file "b.txt" does not match its manifest'
    with pytest.raises(OutputError, match=re.escape(damaged)):
        write_delivery_archive(dest, [good, bad], ticket=TICKET)
    assert os.listdir(dest.parent) == []


def test_missing_task_archive_is_an_output_error(tmp_path: Path) -> None:
    refs = [TaskArchiveRef(name="gone", state="succeeded", archive=tmp_path / "gone.tar.gz")]
    with pytest.raises(OutputError, match="cannot read the archive"):
        write_delivery_archive(tmp_path / "delivery.tar.gz", refs, ticket=TICKET)
