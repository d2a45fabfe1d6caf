"""Reading archives back: a task's manifest, and the check of an archive against its manifest.

``verify_archive`` takes any file, including one built to hurt its reader, and answers with
problems, never with an exception: a file that is not gzip or is cut short, members that are
links, devices or directories, names that are absolute or climb out with "..", a manifest
that is not JSON, not an object, of the wrong shape, nested 100,000 deep or far too large.
What it reads is bounded:

- decompressed bytes: at most ``MAX_VERIFIED_BYTES`` in all (a decompression bomb stops
  there), and never more than a gzip file of its size can hold (deflate expands at most
  1,032 times): a member that declares more is refused before a byte of it is read;
- the bytes between members (tar, pax and GNU headers): ``MAX_HEADER_BYTES`` per member;
- members: ``MAX_MEMBERS``; the manifest: ``MAX_MANIFEST_BYTES``, and so many objects and
  values that decoding it takes at most ~100 MB.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

from swarmd.errors import OutputError
from swarmd.outputs.archive import FILES_PREFIX, MANIFEST_JSON, MANIFEST_TXT
from swarmd.outputs.paths import format_size, path_problem, quote_path
from swarmd.text import escape, plain_or_quoted

MAX_VERIFIED_BYTES = 16 * 2**30
MAX_HEADER_BYTES = 2**20
MAX_MEMBERS = 100_000
MAX_MANIFEST_BYTES = 32 * 2**20
MAX_MANIFEST_ITEMS = 2 * MAX_MEMBERS + 20_000
"""Objects and arrays: one per file, and a few for the metadata (or a delivery's tasks)."""
MAX_MANIFEST_VALUES = 10 * MAX_MEMBERS + 200_000
"""Keys and array items: a file entry has four keys; a delivery's task entry has eight."""
MAX_INTEGER_DIGITS = 40
DEFLATE_MAX_RATIO = 1032
SHOWN_PATH_CHARS = 1024
CHUNK_BYTES = 2**20


class ArchiveRefused(OutputError):
    """The archive is past one of the bounds of what a reader takes on."""


def verify_archive(path: Path, *, max_bytes: int = MAX_VERIFIED_BYTES) -> list[str]:
    """Each way ``path`` disagrees with its ``manifest.json``, first mismatch first; ``[]``: ok.

    Never raises for what the file holds: every fault of the archive is a problem in the
    list, and reading stops at the first fault that leaves the rest unreadable.
    """
    shown = plain_or_quoted(str(path), SHOWN_PATH_CHARS)
    try:
        # O_NONBLOCK: a FIFO is refused after the open, never waited on.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return [f"{shown} does not exist"]
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        return [f"cannot read {shown}: {getattr(exc, 'strerror', None) or exc}"]
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return [f"{shown} is not a regular file"]
    os.set_blocking(fd, True)
    checker = _Verification()
    try:
        with open(fd, "rb") as raw:
            limit = min(max_bytes, info.st_size * DEFLATE_MAX_RATIO + CHUNK_BYTES)
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                stream = _MeteredStream(gz, limit, shown, max_bytes)
                checker.read_members(stream)
                # tar stops at its end marker; gzip checks its CRC and length only at the end.
                stream.drain()
    except OutputError as exc:
        return [*checker.problems, str(exc)]
    except RecursionError:  # tarfile follows a chain of pax headers by recursion
        return [*checker.problems, f"{shown} chains extended tar headers too deeply"]
    except (OSError, EOFError, tarfile.TarError, zlib.error, ValueError) as exc:
        # ValueError: tarfile lets some malformed sparse and pax records through as such.
        reason = escape(" ".join(str(exc).split())[:200]) or type(exc).__name__
        return [*checker.problems, f"{shown} is not a whole, readable tar.gz archive: {reason}"]
    return checker.verdict()


def read_archive_manifest(path: Path) -> dict[str, Any]:
    """The ``manifest.json`` of the archive at ``path``; ``OutputError`` if unreadable."""
    shown = plain_or_quoted(str(path), SHOWN_PATH_CHARS)
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                if member.name == MANIFEST_JSON and member.isreg():
                    manifest = load_manifest(member_file(tar, member), member.size)
                    if valid_files(manifest) is not None:
                        return manifest  # type: ignore[no-any-return]
                    break
    except (OSError, EOFError, tarfile.TarError, zlib.error, ValueError, RecursionError) as exc:
        reason = escape(" ".join(str(exc).split())[:200])
        raise OutputError(f"cannot read the archive {shown}: {reason}") from exc
    raise OutputError(f"the archive {shown} has no usable manifest.json")


def load_manifest(file: IO[bytes], size: int) -> Any:
    """The decoded manifest of ``size`` bytes; ``OutputError`` if too large, deep or not JSON."""
    if size > MAX_MANIFEST_BYTES:
        raise OutputError(
            f"manifest.json is {format_size(size)}, over the limit of "
            f"{format_size(MAX_MANIFEST_BYTES)}"
        )
    raw = file.read(size)
    # Counted before parsing, as brackets, commas and colons, inside strings too (a real
    # manifest stays far below the limits anyway): 32 MiB of "[]," or of "1," would take
    # gigabytes once decoded.
    if raw.count(b"{") + raw.count(b"[") > MAX_MANIFEST_ITEMS:
        raise OutputError(f"manifest.json holds more than {MAX_MANIFEST_ITEMS:,} objects")
    if raw.count(b",") + raw.count(b":") > MAX_MANIFEST_VALUES:
        raise OutputError(f"manifest.json holds more than {MAX_MANIFEST_VALUES:,} values")
    try:
        return json.loads(raw, parse_int=_bounded_int)
    except RecursionError as exc:
        raise OutputError("manifest.json is nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a 5,000-digit number
        reason = escape(" ".join(str(exc).split())[:200])
        raise OutputError(f"manifest.json is not valid JSON: {reason}") from exc


def _bounded_int(digits: str) -> int:
    if len(digits) > MAX_INTEGER_DIGITS:
        raise OutputError(f"manifest.json holds an integer of {len(digits):,} digits")
    return int(digits)


def valid_files(manifest: Any) -> list[Any] | None:
    """The manifest's ``files`` list if it is a list of well-formed entries, else None."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if isinstance(files, list) and all(_is_file_entry(entry) for entry in files):
        return files
    return None


def member_file(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    file = tar.extractfile(member)
    if file is None:
        raise OutputError(f"member {quote_path(member.name)} has no data")
    return file


class _Verification:
    """What one ``verify_archive`` call has found so far."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.found: dict[str, tuple[int, str]] = {}
        self.manifest: Any = None
        self.manifests = 0

    def read_members(self, stream: _MeteredStream) -> None:
        # Stream mode ("r|") only ever calls read(), which is all the metered stream has.
        # Opening reads the first member's headers: they are bounded like every other's.
        with contextlib.ExitStack() as opened:
            with stream.reading_header():
                tar = opened.enter_context(
                    tarfile.open(fileobj=cast("IO[bytes]", stream), mode="r|")
                )
            for count, member in enumerate(_members(tar, stream), start=1):
                if count > MAX_MEMBERS:
                    raise ArchiveRefused(f"the archive holds more than {MAX_MEMBERS:,} members")
                self.check_member(tar, member, stream)

    def check_member(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, stream: _MeteredStream
    ) -> None:
        name = member.name
        if member.issparse() or not member.isreg():
            kind = _kind_of(member)
            self.problems.append(
                f"the archive holds an unexpected member {quote_path(name)} ({kind})"
            )
            if member.issparse():
                raise ArchiveRefused("verification stops at a sparse member")
            if member.type not in tarfile.SUPPORTED_TYPES:
                # tarfile reads an unknown type's data as a file's: read it through, bounded.
                stream.admit(member)
                _sha256_of(member_file(tar, member))
            return
        stream.admit(member)
        data = member_file(tar, member)
        if name == MANIFEST_JSON:
            self.manifests += 1
            if self.manifests > 1:
                self.problems.append("manifest.json appears twice")
            self.manifest = load_manifest(data, member.size)
        elif name.startswith(FILES_PREFIX):
            relpath = name.removeprefix(FILES_PREFIX)
            problem = path_problem(relpath)
            if problem:
                self.problems.append(f"file {quote_path(relpath)} {problem}")
            if relpath in self.found:
                self.problems.append(f"file {quote_path(relpath)} appears twice")
            self.found[relpath] = (member.size, _sha256_of(data))
        elif name == MANIFEST_TXT:
            _sha256_of(data)  # read through, so the next header is where tar expects it
        else:
            self.problems.append(f"the archive holds an unexpected member {quote_path(name)}")
            _sha256_of(data)

    def verdict(self) -> list[str]:
        if self.manifest is None:
            return [*self.problems, "the archive has no manifest.json"]
        return self.problems + _compare_with_manifest(self.manifest, self.found)


class _MeteredStream:
    """The decompressed archive as tarfile reads it, with every read counted against bounds."""

    def __init__(self, source: io.BufferedIOBase, limit: int, shown: str, max_bytes: int) -> None:
        self.source = source
        self.limit = limit  # of all decompressed bytes
        self.shown = shown
        self.max_bytes = max_bytes
        self.spent = 0
        self.header_spent: int | None = None  # bytes since the member's header began

    def read(self, size: int = -1) -> bytes:
        wanted = CHUNK_BYTES if size < 0 else size
        data = self.source.read(min(wanted, self.limit - self.spent + 1))
        self.spent += len(data)
        if self.spent > self.limit:
            raise ArchiveRefused(self._over_limit())
        if self.header_spent is not None:
            self.header_spent += len(data)
            if self.header_spent > MAX_HEADER_BYTES:
                raise ArchiveRefused(
                    f"a member's headers take more than {format_size(MAX_HEADER_BYTES)}"
                )
        return data

    @contextlib.contextmanager
    def reading_header(self) -> Iterator[None]:
        self.header_spent = 0
        try:
            yield
        finally:
            self.header_spent = None

    def admit(self, member: tarfile.TarInfo) -> None:
        """Refuse a member whose declared size the bounds cannot take, before reading it."""
        if member.size < 0:
            raise ArchiveRefused(f"member {quote_path(member.name)} declares a negative size")
        if member.size > self.limit - self.spent:
            raise ArchiveRefused(
                f"member {quote_path(member.name)} declares {format_size(member.size)}; "
                + self._over_limit()
            )

    def drain(self) -> None:
        while self.read(CHUNK_BYTES):
            pass

    def _over_limit(self) -> str:
        if self.limit < self.max_bytes:
            return f"{self.shown} cannot hold that much data: it is damaged or a decompression bomb"
        return f"verification reads at most {format_size(self.max_bytes)} of an archive"


def _members(tar: tarfile.TarFile, stream: _MeteredStream) -> Iterator[tarfile.TarInfo]:
    """The members of a stream-mode archive, each header read under the header bound."""
    while True:
        with stream.reading_header():
            member = tar.next()
        if member is None:
            return
        yield member


def _kind_of(member: tarfile.TarInfo) -> str:
    if member.issparse():
        return "a sparse file"
    if member.issym():
        return f"a symlink to {quote_path(member.linkname)}"
    if member.islnk():
        return f"a hard link to {quote_path(member.linkname)}"
    if member.isdir():
        return "a directory"
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a FIFO"
    return "not a regular file"


def _sha256_of(file: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := file.read(CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


def _compare_with_manifest(manifest: Any, found: dict[str, tuple[int, str]]) -> list[str]:
    listed = valid_files(manifest)
    if listed is None:
        return ["manifest.json has no valid list of files"]
    problems: list[str] = []
    unseen = dict(found)
    for entry in listed:
        path, size, sha256 = entry["path"], entry["size"], entry["sha256"]
        actual = unseen.pop(path, None)
        if actual is None:
            where = "twice in the manifest" if path in found else "missing from the archive"
            problems.append(f"file {quote_path(path)} is {where}")
        elif actual[0] != size:
            problems.append(
                f"file {quote_path(path)} has {actual[0]} bytes; the manifest says {size}"
            )
        elif actual[1] != sha256:
            problems.append(f"file {quote_path(path)} does not match its sha256 in the manifest")
    problems.extend(f"file {quote_path(path)} is not in the manifest" for path in unseen)
    if manifest.get("file_count") != len(listed):
        problems.append(f"the manifest's file_count is not its {len(listed)} files")
    if manifest.get("total_bytes") != sum(entry["size"] for entry in listed):
        problems.append("the manifest's total_bytes is not the sum of its file sizes")
    return problems


def _is_file_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("path"), str)
        and type(entry.get("size")) is int
        and isinstance(entry.get("sha256"), str)
    )
