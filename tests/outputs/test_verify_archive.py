"""verify_archive: a whole archive passes; any disagreement with its manifest is named."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from swarmd.outputs import verify_archive, write_task_archive


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    (workspace / "site").mkdir(parents=True)
    (workspace / "site" / "index.html").write_text("<h1>hello</h1>\n")
    (workspace / "notes.md").write_text("notes\n")
    return write_task_archive(workspace, tmp_path / "task.tar.gz", manifest={"task": "t"}).path


def rewrite(source: Path, dest: Path, change: dict[str, bytes | None]) -> Path:
    """Copy ``source`` member by member, replacing (bytes) or dropping (None) the named ones."""
    with tarfile.open(source) as old, tarfile.open(dest, "w:gz") as new:
        for member in old.getmembers():
            data = old.extractfile(member).read()  # type: ignore[union-attr]
            if member.name in change:
                replacement = change[member.name]
                if replacement is None:
                    continue
                data = replacement
            member.size = len(data)
            new.addfile(member, io.BytesIO(data))
        for name, data in change.items():
            if name not in old.getnames() and data is not None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                new.addfile(info, io.BytesIO(data))
    return dest


def test_untouched_archive_has_no_problems(archive: Path) -> None:
    assert verify_archive(archive) == []


def test_tampered_file_is_named_first(archive: Path, tmp_path: Path) -> None:
    tampered = rewrite(
        archive, tmp_path / "t.tar.gz", {"files/site/index.html": b"<h1>HELLO</h1>\n"}
    )
    assert verify_archive(tampered) == [
        'file "site/index.html" does not match its sha256 in the manifest'
    ]


def test_resized_file_is_named(archive: Path, tmp_path: Path) -> None:
    tampered = rewrite(archive, tmp_path / "t.tar.gz", {"files/notes.md": b"longer notes\n"})
    assert verify_archive(tampered) == ['file "notes.md" has 13 bytes; the manifest says 6']


def test_missing_file_is_named(archive: Path, tmp_path: Path) -> None:
    tampered = rewrite(archive, tmp_path / "t.tar.gz", {"files/notes.md": None})
    assert verify_archive(tampered) == ['file "notes.md" is missing from the archive']


def test_extra_file_is_named(archive: Path, tmp_path: Path) -> None:
    tampered = rewrite(archive, tmp_path / "t.tar.gz", {"files/extra.sh": b"rm -rf ~\n"})
    assert verify_archive(tampered) == ['file "extra.sh" is not in the manifest']


def test_member_outside_files_is_named(archive: Path, tmp_path: Path) -> None:
    tampered = rewrite(archive, tmp_path / "t.tar.gz", {"../escape": b"x"})
    assert verify_archive(tampered) == ['the archive holds an unexpected member "../escape"']


def test_wrong_file_count_is_named(archive: Path, tmp_path: Path) -> None:
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    manifest["file_count"] = 3
    tampered = rewrite(
        archive, tmp_path / "t.tar.gz", {"manifest.json": json.dumps(manifest).encode()}
    )
    assert verify_archive(tampered) == ["the manifest's file_count is not its 2 files"]


def test_archive_without_manifest_is_refused(archive: Path, tmp_path: Path) -> None:
    tampered = rewrite(archive, tmp_path / "t.tar.gz", {"manifest.json": None})
    assert verify_archive(tampered) == ["the archive has no manifest.json"]


def test_manifest_that_is_not_json_is_named(archive: Path, tmp_path: Path) -> None:
    tampered = rewrite(archive, tmp_path / "t.tar.gz", {"manifest.json": b"{not json"})
    assert verify_archive(tampered)[0].startswith("manifest.json is not valid JSON")


def test_truncated_archive_is_named(archive: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[:-40])
    problems = verify_archive(cut)
    assert problems
    assert "is not a whole, readable tar.gz archive" in problems[-1]


@pytest.mark.parametrize("offset", [200, -20, -8, -1], ids=["data", "padding", "crc", "length"])
def test_flipped_byte_is_detected(archive: Path, tmp_path: Path, offset: int) -> None:
    data = bytearray(archive.read_bytes())
    data[offset] ^= 0xFF
    flipped = tmp_path / "flipped.tar.gz"
    flipped.write_bytes(bytes(data))
    assert verify_archive(flipped) != []


def test_missing_archive_is_named(tmp_path: Path) -> None:
    assert verify_archive(tmp_path / "none.tar.gz") == [
        f"{tmp_path / 'none.tar.gz'} does not exist"
    ]


def test_file_that_is_not_an_archive_is_named(tmp_path: Path) -> None:
    path = tmp_path / "plain.tar.gz"
    path.write_text("just text")
    assert "is not a whole, readable tar.gz archive" in verify_archive(path)[0]
