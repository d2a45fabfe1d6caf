"""Writing a reply's files: hostile blocks are refused and reported, never written outside."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from swarmd.errors import UnsafePathError
from swarmd.outputs import WriteReport, safe_write, write_reply_files

MiB = 1024 * 1024


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the workspace that every test expects to stay empty."""
    path = tmp_path / "outside"
    path.mkdir()
    return path


def files_in(root: Path) -> list[str]:
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink()
    )


def reasons_for(report: WriteReport, path: str) -> list[str]:
    return [refusal.reason for refusal in report.refused if refusal.path == path]


def block(path: str, content: str = "x") -> str:
    return f'<file path="{path}">\n{content}\n</file>\n'


def test_reply_is_kept_whole_as_response_md(workspace: Path) -> None:
    reply = "<think>hmm</think>\nDone.\n" + block("a.txt", "A")
    report = write_reply_files(workspace, reply)
    assert (workspace / "response.md").read_text() == reply
    assert report.written == ["a.txt"]
    assert (workspace / "a.txt").read_text() == "A"


def test_blocks_inside_think_are_not_written(workspace: Path) -> None:
    report = write_reply_files(workspace, "<think>" + block("draft.txt") + "</think>ok")
    assert report.written == []
    assert not (workspace / "draft.txt").exists()


def test_nested_path_creates_its_directories(workspace: Path) -> None:
    write_reply_files(workspace, block("site/css/main.css", "body{}"))
    assert (workspace / "site" / "css" / "main.css").read_text() == "body{}"


def test_later_block_for_the_same_path_wins(workspace: Path) -> None:
    report = write_reply_files(workspace, block("a.txt", "first") + block("./a.txt", "second"))
    assert report.written == ["a.txt"]
    assert (workspace / "a.txt").read_text() == "second"


def test_climbing_out_with_dot_dot_is_refused(workspace: Path, outside: Path) -> None:
    escape = f"../{outside.name}/x"
    assert not Path("/etc/x").exists()
    report = write_reply_files(workspace, block("../../etc/x") + block(escape))
    assert [r.path for r in report.refused] == ["../../etc/x", escape]
    assert all("climbs out of the workspace" in r.reason for r in report.refused)
    assert not Path("/etc/x").exists()
    assert files_in(outside) == []
    assert files_in(workspace) == ["response.md"]


def test_absolute_path_is_refused(workspace: Path, outside: Path) -> None:
    target = outside / "x"
    report = write_reply_files(workspace, block("/etc/x") + block(str(target)))
    assert [r.reason for r in report.refused] == [
        'path "/etc/x" is absolute',
        f'path "{target}" is absolute',
    ]
    assert not target.exists()
    assert files_in(workspace) == ["response.md"]


def test_symlink_to_root_planted_in_workspace_is_refused(workspace: Path) -> None:
    (workspace / "root").symlink_to("/")
    name = f"swarmd-escape-{uuid.uuid4().hex}"
    report = write_reply_files(workspace, block(f"root/tmp/{name}"))
    assert report.written == []
    assert report.refused[0].reason == f'path "root/tmp/{name}" meets "root", which is a symlink'
    assert not Path("/tmp", name).exists()


def test_symlink_to_outside_directory_is_refused(workspace: Path, outside: Path) -> None:
    (workspace / "site").mkdir()
    (workspace / "site" / "assets").symlink_to(outside)
    report = write_reply_files(workspace, block("site/assets/app.js"))
    assert 'meets "site/assets", which is a symlink' in report.refused[0].reason
    assert files_in(outside) == []


def test_symlink_as_the_file_itself_is_refused(workspace: Path, outside: Path) -> None:
    target = outside / "target.txt"
    target.write_text("keep me")
    (workspace / "notes.txt").symlink_to(target)
    report = write_reply_files(workspace, block("notes.txt", "overwritten"))
    assert report.refused[0].reason == 'path "notes.txt" is a symlink'
    assert target.read_text() == "keep me"


def test_hard_link_is_replaced_not_written_through(workspace: Path, outside: Path) -> None:
    target = outside / "secret.txt"
    target.write_text("keep me")
    os.link(target, workspace / "notes.txt")
    report = write_reply_files(workspace, block("notes.txt", "new"))
    assert report.written == ["notes.txt"]
    assert (workspace / "notes.txt").read_text() == "new"
    assert target.read_text() == "keep me"


def test_file_over_the_size_cap_is_refused(workspace: Path) -> None:
    report = write_reply_files(
        workspace, block("small.txt", "x" * 10) + block("big.txt", "x" * 11), max_file_bytes=10
    )
    assert report.written == ["small.txt"]
    assert report.refused[0].reason == 'file "big.txt" is over the cap of 10 bytes'
    assert not (workspace / "big.txt").exists()


def test_multibyte_content_is_measured_in_bytes(workspace: Path) -> None:
    report = write_reply_files(workspace, block("e.txt", "é" * 6), max_file_bytes=10)
    assert [r.path for r in report.refused] == ["e.txt"]


def test_file_just_over_a_100_mib_cap_is_refused(workspace: Path) -> None:
    reply = block("huge.bin", "x" * (100 * MiB + 1)) + block("ok.txt")
    report = write_reply_files(workspace, reply, max_file_bytes=100 * MiB)
    assert report.written == ["ok.txt"]
    assert reasons_for(report, "huge.bin") == ['file "huge.bin" is over the cap of 100 MiB']
    assert not (workspace / "huge.bin").exists()


def test_reply_over_the_total_cap_keeps_only_its_start_as_response_md(workspace: Path) -> None:
    report = write_reply_files(workspace, "y" * 20, max_total_bytes=10)
    assert (workspace / "response.md").read_text() == "y" * 10
    assert reasons_for(report, "response.md") == ["the reply is over 10 bytes; kept its start"]


def test_files_past_the_total_cap_are_refused(workspace: Path) -> None:
    reply = block("a", "x" * 6) + block("b", "x" * 6)
    report = write_reply_files(workspace, reply, max_total_bytes=10)
    assert report.written == ["a"]
    assert reasons_for(report, "b") == ['file "b" would take the reply past 10 bytes']


def test_hundred_thousand_blocks_are_capped_with_one_report(workspace: Path) -> None:
    reply = "".join(f'<file path="f{i}.txt">{i}</file>\n' for i in range(100_000))
    report = write_reply_files(workspace, reply, max_files=1000)
    assert len(report.written) == 1000
    assert len(report.refused) == 1
    assert report.refused[0].path == "f1000.txt"
    assert report.refused[0].reason == (
        "99,000 file blocks past the cap of 1,000 per reply were not written"
    )
    assert len(os.listdir(workspace)) == 1001  # the files and response.md


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("a\0b.txt", 'path "a\\u0000b.txt" holds a NUL byte'),
        ("a\nb.txt", 'path "a\\nb.txt" holds a newline'),
        ("a\rb.txt", 'path "a\\rb.txt" holds a newline'),
        ("a\tb.txt", 'path "a\\tb.txt" holds a control character'),
        ("dir\\file.txt", 'path "dir\\\\file.txt" holds a backslash'),
        ("", 'path "" is empty'),
        ("site/", 'path "site/" names a directory, not a file'),
        ("x" * 256, "has a name longer than 255 bytes"),
    ],
    ids=["nul", "newline", "carriage-return", "tab", "backslash", "empty", "dir", "long-name"],
)
def test_unsafe_name_is_refused(workspace: Path, path: str, reason: str) -> None:
    report = write_reply_files(workspace, block(path))
    assert report.written == []
    assert len(report.refused) == 1
    assert reason in report.refused[0].reason
    assert files_in(workspace) == ["response.md"]


def test_block_that_never_closes_is_refused_and_not_written(workspace: Path) -> None:
    report = write_reply_files(workspace, '<file path="cut.txt">\nhalf a file')
    assert report.written == []
    assert report.refused[0].reason == 'file block "cut.txt" never closes'
    assert not (workspace / "cut.txt").exists()


@pytest.mark.parametrize("path", ["response.md", ".swarmd/inputs.json"])
def test_reserved_path_is_refused(workspace: Path, path: str) -> None:
    report = write_reply_files(workspace, block(path, "forged"))
    assert report.refused[0].reason == f'path "{path}" is reserved by swarmd'
    assert not (workspace / ".swarmd").exists()


def test_file_where_a_directory_is_needed_is_refused(workspace: Path) -> None:
    report = write_reply_files(workspace, block("site", "file") + block("site/index.html"))
    assert report.written == ["site"]
    assert (
        report.refused[0].reason == 'path "site/index.html" meets "site", which is not a directory'
    )


def test_safe_write_returns_the_written_path(workspace: Path) -> None:
    path = safe_write(workspace, "./a//b.txt", b"data")
    assert path == workspace / "a" / "b.txt"
    assert path.read_bytes() == b"data"


def test_safe_write_replaces_an_existing_file(workspace: Path) -> None:
    safe_write(workspace, "a.txt", b"old")
    safe_write(workspace, "a.txt", b"new")
    assert (workspace / "a.txt").read_bytes() == b"new"
    assert os.listdir(workspace) == ["a.txt"]  # no temporary file left behind


def test_safe_write_refuses_a_directory_as_the_file(workspace: Path) -> None:
    (workspace / "site").mkdir()
    with pytest.raises(UnsafePathError, match='path "site" is a directory'):
        safe_write(workspace, "site", b"x")


def test_safe_write_refuses_a_fifo_as_the_file(workspace: Path) -> None:
    os.mkfifo(workspace / "pipe")
    with pytest.raises(UnsafePathError, match='path "pipe" is not a regular file'):
        safe_write(workspace, "pipe", b"x")


@pytest.mark.parametrize(
    ("path", "kept_as", "reason"),
    [
        ("bad\udcff.txt", "bad\\udcff.txt", 'path "bad\\udcff.txt" is not valid UTF-8'),
        ("ev\u202egnp.exe", "ev\u202egnp.exe", 'path "ev\\u202egnp.exe" holds U+202E'),
        ("zw\u200b.txt", "zw\u200b.txt", 'path "zw\\u200b.txt" holds U+200B'),
        ("csi\x9b.txt", "csi\x9b.txt", 'path "csi\\u009b.txt" holds a control character'),
    ],
    ids=["lone-surrogate", "bidi-override", "zero-width-space", "c1-control"],
)
def test_hostile_path_is_refused_and_kept_storable_beside_the_rest(
    workspace: Path, path: str, kept_as: str, reason: str
) -> None:
    report = write_reply_files(workspace, block(path) + block("ok.txt", "fine"))
    assert report.written == ["ok.txt"]
    assert [r.path for r in report.refused] == [kept_as]
    assert report.refused[0].reason.startswith(reason)
    report.refused[0].path.encode("utf-8")  # storable as it is in a manifest
    assert report.refused[0].reason.isprintable()


def test_very_long_hostile_path_is_shortened_in_the_reason(workspace: Path) -> None:
    report = write_reply_files(workspace, block("../" * 1500 + "x"))
    assert len(report.refused[0].reason) < 300
    assert "…" in report.refused[0].reason
