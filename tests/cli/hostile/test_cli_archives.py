"""``swarmd verify-archive`` on archives built to hurt their reader: exit 1 with one sentence,
never a traceback, within bounded time and memory."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.support.hostile import (
    BAD_INPUT,
    FAILED,
    Batch,
    Outcome,
    Sandbox,
    assert_refused,
    batch_fixture,
)
from tests.support.hostile_archives import ARCHIVES, write_archive

MEMORY_LIMIT_MB = 1024
PEAK_MB = 200

# Every archive of tests/hostile/archives.py is verified in-process (test_verify_archive.py);
# through the command, one of each kind of harm.
THROUGH_THE_CLI = [
    "not-gzip",
    "truncated-gzip",
    "trailing-garbage-after-gzip",
    "symlink-member",
    "hardlink-member",
    "device-member",
    "absolute-member",
    "dotdot-under-files",
    "bidi-member-name",
    "non-utf8-member-name",
    "huge-declared-size",
    "negative-size",
    "decompression-bomb",
    "huge-pax-header",
    "huge-gnu-longname",
    "pax-header-chain",
    "pax-sparse-map-bomb",
    "old-gnu-sparse",
    "manifest-nested-100k",
    "manifest-not-json",
    "manifest-huge-number",
    "manifest-too-large",
    "manifest-millions-of-arrays",
    "manifest-twice",
    "manifest-lone-surrogate-path",
]


def _verify(name: str) -> Callable[[Sandbox], Outcome]:
    def run(box: Sandbox) -> Outcome:
        path = write_archive(box.inputs, name)
        return box.run("verify-archive", str(path), memory_limit_mb=MEMORY_LIMIT_MB, timeout=60)

    return run


hostile_archives = batch_fixture(
    "hostile_archives", {name: _verify(name) for name in THROUGH_THE_CLI}
)


def test_every_archive_through_the_cli_exists() -> None:
    assert set(THROUGH_THE_CLI) <= set(ARCHIVES)


@pytest.mark.parametrize("case", THROUGH_THE_CLI)
def test_verify_archive_refuses_a_hostile_archive_in_bounded_memory(
    hostile_archives: Batch, case: str
) -> None:
    box, outcome = hostile_archives.outcome(case)
    sentence = assert_refused(outcome, FAILED, f"swarmd: {box.inputs / case}.tar.gz")
    assert len(sentence) < 700
    assert outcome.peak_mb is not None and outcome.peak_mb < PEAK_MB, outcome.peak_mb
    assert outcome.seconds < 30


def _fifo(box: Sandbox) -> os.PathLike[str]:
    path = box.inputs / "a.tar.gz"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda box: box.inputs / "absent.tar.gz", "no archive at"),
        (lambda box: box.inputs, "no archive at"),
        (_fifo, "no archive at"),
    ],
    ids=["missing", "directory", "fifo"],
)
def test_verify_archive_of_what_is_not_a_file_is_bad_input(
    sandbox: Sandbox, make: Callable[[Sandbox], os.PathLike[str]], fragment: str
) -> None:
    outcome = sandbox.run("verify-archive", os.fspath(make(sandbox)), timeout=15)
    assert_refused(outcome, BAD_INPUT, fragment)
