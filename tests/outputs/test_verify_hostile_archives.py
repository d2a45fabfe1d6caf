"""``verify_archive`` on archives built to hurt their reader: every one is a list of problems,
never an exception, read within bounds."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from swarmd.outputs import verify, verify_archive
from tests.support.hostile_archives import (
    ARCHIVES,
    END,
    gz,
    header,
    many_members,
    member,
    write_archive,
    zeros_gz,
)

EXPECTED = {
    "empty-file": "is not a whole, readable tar.gz archive: empty file",
    "not-gzip": "is not a whole, readable tar.gz archive: Not a gzipped file",
    "gzip-of-garbage": "is not a whole, readable tar.gz archive: invalid header",
    "gzip-of-nothing": "is not a whole, readable tar.gz archive: empty file",
    "plain-tar-not-gzipped": "Not a gzipped file",
    "truncated-gzip": "Compressed file ended before the end-of-stream marker was reached",
    "truncated-mid-member": "unexpected end of data",
    "trailing-garbage-after-gzip": "Not a gzipped file",
    "zeros-named-tar-gz": "Not a gzipped file",
    "symlink-member": 'unexpected member "files/link" (a symlink to "/etc/passwd")',
    "hardlink-member": 'unexpected member "files/hard" (a hard link to "/etc/shadow")',
    "device-member": 'unexpected member "files/dev" (a device)',
    "fifo-member": 'unexpected member "files/fifo" (a FIFO)',
    "directory-member": 'unexpected member "files/dir" (a directory)',
    "unknown-type-member": 'unexpected member "files/odd" (not a regular file)',
    "absolute-member": 'unexpected member "/etc/cron.d/evil"',
    "dotdot-member": 'unexpected member "../../escape"',
    "dotdot-under-files": 'file "../../etc/x" climbs out of the workspace with ".."',
    "absolute-under-files": 'file "/etc/x" is absolute',
    "bidi-member-name": 'file "evil\\u202egnp.exe" holds U+202E',
    "non-utf8-member-name": 'file "bad\\udcff\\udcfe.txt" is not valid UTF-8',
    "huge-declared-size": "declares 1024 TiB;",
    "negative-size": 'member "files/neg.bin" declares a negative size',
    "decompression-bomb": "cannot hold that much data: it is damaged or a decompression bomb",
    "huge-pax-header": "a member's headers take more than 1 MiB",
    "huge-gnu-longname": "a member's headers take more than 1 MiB",
    "pax-header-chain": "chains extended tar headers too deeply",
    "pax-sparse-map-bomb": "is not a whole, readable tar.gz archive",
    "old-gnu-sparse": "verification stops at a sparse member",
    "manifest-nested-100k": "manifest.json is nested too deeply",
    "manifest-not-json": "manifest.json is not valid JSON",
    "manifest-not-utf8": "manifest.json is not valid JSON",
    "manifest-array": "manifest.json has no valid list of files",
    "manifest-wrong-types": "manifest.json has no valid list of files",
    "manifest-bool-size": "manifest.json has no valid list of files",
    "manifest-huge-number": "manifest.json holds an integer of 5,000 digits",
    "manifest-nan": "the manifest's total_bytes is not the sum of its file sizes",
    "manifest-too-large": "manifest.json is 40 MiB, over the limit of 32 MiB",
    "manifest-millions-of-arrays": "manifest.json holds more than",
    "manifest-twice": "manifest.json appears twice",
    "manifest-lone-surrogate-path": 'file "\\udcff" is missing from the archive',
    "manifest-is-symlink": "the archive has no manifest.json",
    "file-listed-twice": 'file "a" appears twice',
}


def test_every_hostile_archive_has_an_expected_problem() -> None:
    assert set(EXPECTED) == set(ARCHIVES)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", sorted(ARCHIVES))
def test_hostile_archive_is_a_problem_not_an_exception(tmp_path: Path, name: str) -> None:
    path = write_archive(tmp_path, name)
    tracemalloc.start()
    try:
        problems = verify_archive(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert problems, "a hostile archive passed verification"
    assert EXPECTED[name] in " | ".join(problems)
    for problem in problems:
        assert "\n" not in problem and len(problem) < 600
        assert problem.isprintable()
    assert peak < 120 * 2**20  # what verification itself allocated, the archive's size aside


def test_member_past_the_byte_budget_is_refused_before_it_is_read(tmp_path: Path) -> None:
    size = 64 * 2**20  # honest: the zeros are really there
    path = tmp_path / "zeros.tar.gz"
    path.write_bytes(gz(header("files/zeros.bin", size=size)) + zeros_gz(size) + gz(END))
    problems = verify_archive(path, max_bytes=16 * 2**20)
    assert problems == [
        'member "files/zeros.bin" declares 64 MiB; verification reads at most 16 MiB of an archive'
    ]


def test_data_past_the_byte_budget_after_the_last_member_stops_the_read(tmp_path: Path) -> None:
    path = tmp_path / "tail.tar.gz"
    path.write_bytes(gz(member("manifest.json", b'{"files": []}') + END) + zeros_gz(64 * 2**20))
    problems = verify_archive(path, max_bytes=8 * 2**20)
    assert problems[-1] == "verification reads at most 8 MiB of an archive"


def test_archive_of_too_many_members_stops_at_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verify, "MAX_MEMBERS", 1000)
    path = tmp_path / "many.tar.gz"
    path.write_bytes(many_members(5000))
    assert verify_archive(path)[-1] == "the archive holds more than 1,000 members"


@pytest.mark.timeout(10)
def test_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "a.tar.gz"
    os.mkfifo(fifo)
    assert verify_archive(fifo) == [f"{fifo} is not a regular file"]


def test_directory_is_refused(tmp_path: Path) -> None:
    assert verify_archive(tmp_path) == [f"{tmp_path} is not a regular file"]


def test_path_with_hidden_characters_is_quoted(tmp_path: Path) -> None:
    path = tmp_path / "a\u202eb.tar.gz"
    path.write_bytes(b"junk")
    problem = verify_archive(path)[0]
    assert "\u202e" not in problem
    assert problem.startswith('"') and "a\\u202eb.tar.gz" in problem
