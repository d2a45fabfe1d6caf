"""Task archives: manifests that match their files, the same bytes for the same outputs, atomic."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

from swarmd.errors import OutputError
from swarmd.outputs import prepare_workspace, verify_archive, write_task_archive

DESCRIPTION = {"task": "html", "agent": "llm"}
RUN = {"ticket": 7, "model": "echo/echo", "attempt": 1, "started_at": 1767225600.5}
METADATA = {**DESCRIPTION, **RUN}


def make_workspace(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for relpath, content in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def varied_files() -> dict[str, bytes]:
    long_name = "deep/" + "n" * 120 + ".txt"  # past ustar's 100-byte name field
    return {
        "index.html": b"<h1>hi</h1>\n",
        "empty.txt": b"",
        "site/css/main.css": b"body { margin: 0 }\n" * 500,
        "data/random.bin": os.urandom(300_000),
        "café/menü.md": "Ünïcödé\n".encode(),
        long_name: b"long\n",
    }


def extracted(archive: Path, into: Path) -> dict[str, tuple[int, str]]:
    """Each file of the archive as (size, sha256), read with tarfile and hashlib alone."""
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return {
        str(path.relative_to(into)): (
            path.stat().st_size,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in into.rglob("*")
        if path.is_file()
    }


def manifest_of(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        return json.loads(member.read())  # type: ignore[no-any-return]


def test_manifest_lists_every_file_with_its_exact_size_and_hash(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws", varied_files())
    info = write_task_archive(workspace, tmp_path / "out" / "html.tar.gz", manifest=METADATA)
    on_disk = extracted(info.path, tmp_path / "x")
    manifest = manifest_of(info.path)
    listed = {entry["path"]: (entry["size"], entry["sha256"]) for entry in manifest["files"]}
    assert {f"files/{path}": value for path, value in listed.items()} == {
        path: value for path, value in on_disk.items() if path.startswith("files/")
    }
    assert set(on_disk) - {f"files/{path}" for path in listed} == {"manifest.json"}
    assert manifest["file_count"] == info.file_count == len(varied_files())
    assert manifest["total_bytes"] == info.total_bytes == sum(map(len, varied_files().values()))


def test_manifest_carries_the_task_description_and_none_of_the_run(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws", {"a": b"a"})
    info = write_task_archive(workspace, tmp_path / "a.tar.gz", manifest=METADATA)
    manifest = manifest_of(info.path)
    assert {key: manifest[key] for key in DESCRIPTION} == DESCRIPTION
    assert set(RUN).isdisjoint(manifest)
    assert manifest["format"] == "swarmd-task-archive/1"


def test_archive_info_describes_the_archive_file(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws", {"a": b"a"})
    info = write_task_archive(workspace, tmp_path / "a.tar.gz", manifest={})
    data = info.path.read_bytes()
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()


def test_members_are_sorted_and_normalised(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws", {"b": b"1", "a/z": b"2", "tool": b"#!/bin/sh\n"})
    (workspace / "tool").chmod(0o700)
    (workspace / "b").chmod(0o600)
    info = write_task_archive(workspace, tmp_path / "a.tar.gz", manifest={})
    with tarfile.open(info.path) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["files/a/z", "files/b", "files/tool", "manifest.json"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert [oct(m.mode) for m in members] == ["0o644", "0o644", "0o755", "0o644"]


def test_gzip_header_holds_no_name_and_no_time(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws", {"a": b"a"})
    info = write_task_archive(workspace, tmp_path / "named.tar.gz", manifest={})
    header = info.path.read_bytes()[:10]
    assert header[:3] == b"\x1f\x8b\x08"
    assert header[3] & 0x08 == 0  # FNAME flag: no file name stored
    assert header[4:8] == b"\0\0\0\0"  # MTIME


def test_same_outputs_give_byte_identical_archives(tmp_path: Path) -> None:
    files = varied_files()
    first = make_workspace(tmp_path / "one", files)
    second = make_workspace(tmp_path / "elsewhere" / "two", files)
    os.utime(second / "index.html", (1, 1))
    (second / "index.html").chmod(0o600)
    a = write_task_archive(first, tmp_path / "a.tar.gz", manifest=METADATA)
    b = write_task_archive(second, tmp_path / "b.tar.gz", manifest=dict(METADATA))
    c = write_task_archive(first, tmp_path / "c.tar.gz", manifest=METADATA)
    assert a.path.read_bytes() == b.path.read_bytes() == c.path.read_bytes()


def test_a_different_task_description_gives_a_different_archive(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws", {"a": b"a"})
    a = write_task_archive(workspace, tmp_path / "a.tar.gz", manifest={"task": "html"})
    b = write_task_archive(workspace, tmp_path / "b.tar.gz", manifest={"task": "css"})
    assert a.sha256 != b.sha256


def test_another_ticket_attempt_or_model_gives_the_same_archive(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws", {"a": b"a"})
    later = {**DESCRIPTION, "ticket": 8, "attempt": 3, "model": "openai/x", "latency_s": 2.5}
    a = write_task_archive(workspace, tmp_path / "a.tar.gz", manifest=METADATA)
    b = write_task_archive(workspace, tmp_path / "b.tar.gz", manifest=later)
    assert a.path.read_bytes() == b.path.read_bytes()


def test_junk_symlinks_and_special_files_stay_out(tmp_path: Path) -> None:
    workspace = make_workspace(
        tmp_path / "ws",
        {"out.txt": b"o", "run.log": b"l", ".git/HEAD": b"h", "node_modules/x": b""},
    )
    (workspace / "etc").symlink_to("/etc")
    os.mkfifo(workspace / "pipe")
    info = write_task_archive(workspace, tmp_path / "a.tar.gz", manifest={})
    with tarfile.open(info.path) as tar:
        assert tar.getnames() == ["files/out.txt", "manifest.json"]
    assert info.skipped == ('"etc" is a symlink', '"pipe" is not a regular file')
    assert manifest_of(info.path)["skipped"] == list(info.skipped)


def test_unchanged_inputs_stay_out_of_the_task_archive(tmp_path: Path) -> None:
    upstream = make_workspace(tmp_path / "up", {"kept.txt": b"same", "edited.txt": b"before"})
    workspace = tmp_path / "ws"
    prepare_workspace(workspace, [("up", upstream)])
    (workspace / "edited.txt").write_bytes(b"after")
    (workspace / "new.txt").write_bytes(b"new")
    info = write_task_archive(workspace, tmp_path / "a.tar.gz", manifest={})
    assert [entry["path"] for entry in manifest_of(info.path)["files"]] == ["edited.txt", "new.txt"]


def test_empty_workspace_makes_an_archive_with_only_a_manifest(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws", {})
    info = write_task_archive(workspace, tmp_path / "a.tar.gz", manifest={})
    assert (info.file_count, info.total_bytes) == (0, 0)
    assert verify_archive(info.path) == []


def test_existing_archive_is_replaced_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    out = tmp_path / "outputs" / "7"
    workspace = make_workspace(tmp_path / "ws", {"a": b"first"})
    write_task_archive(workspace, out / "html.tar.gz", manifest={})
    (workspace / "a").write_bytes(b"second")
    info = write_task_archive(workspace, out / "html.tar.gz", manifest={})
    assert os.listdir(out) == ["html.tar.gz"]
    assert manifest_of(info.path)["files"][0]["sha256"] == hashlib.sha256(b"second").hexdigest()


@pytest.mark.parametrize("key", ["files", "format", "file_count", "total_bytes", "skipped"])
def test_metadata_may_not_set_a_reserved_key(tmp_path: Path, key: str) -> None:
    workspace = make_workspace(tmp_path / "ws", {"a": b"a"})
    with pytest.raises(OutputError, match=f"manifest metadata may not set {key}"):
        write_task_archive(workspace, tmp_path / "a.tar.gz", manifest={key: 1})
    assert not (tmp_path / "a.tar.gz").exists()


def test_metadata_with_lone_surrogates_is_kept_as_valid_utf8_json(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws", {"a": b"a"})
    refused = [{"path": "bad\udcff.txt", "reason": "not valid UTF-8"}]

    info = write_task_archive(
        workspace, tmp_path / "a.tar.gz", manifest={"refused": refused, "agent": "w\ud800"}
    )

    with tarfile.open(info.path) as tar:
        raw = tar.extractfile("manifest.json").read()  # type: ignore[union-attr]
    document = json.loads(raw.decode("utf-8"))
    assert document["refused"][0]["path"] == "bad\\udcff.txt"
    assert document["agent"] == "w\\ud800"
    assert verify_archive(info.path) == []


def test_metadata_that_is_not_json_is_refused(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws", {"a": b"a"})
    with pytest.raises(OutputError, match="manifest metadata is not plain JSON data"):
        write_task_archive(workspace, tmp_path / "a.tar.gz", manifest={"refused": [object()]})


FULL_DISK = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from swarmd.errors import OutputError
    from swarmd.outputs import write_task_archive

    limit = int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        write_task_archive(Path(sys.argv[1]), Path(sys.argv[2]), manifest={"task": "big"})
    except OutputError as exc:
        print(exc)
        sys.exit(3)
    """
)


def test_full_disk_while_packaging_fails_cleanly(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes write() fail with EFBIG past the limit, as a full disk fails with
    # ENOSPC; Python ignores SIGXFSZ, so the process sees the error instead of dying.
    workspace = make_workspace(
        tmp_path / "ws", {f"r{i}.bin": os.urandom(500_000) for i in range(4)}
    )
    out = tmp_path / "outputs" / "7"
    out.mkdir(parents=True)
    dest = out / "big.tar.gz"
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(workspace), str(dest), str(256 * 1024)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr == ""
    assert done.stdout.strip() == f"cannot write the archive {dest}: File too large"
    assert os.listdir(out) == []  # neither the archive nor its temporary file
