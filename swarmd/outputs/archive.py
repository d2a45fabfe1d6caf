"""Task archives: deterministic tar.gz files with a manifest, written atomically, and verified.

Layout of every archive swarmd writes (a task's, or a ticket's delivery)::

    files/<path>        the outputs, in path order
    manifest.json       for scripts: what the archive is, and every file's path, size and
                        sha256
    manifest.txt        for people (delivery archives only)

The manifest comes last, so each file is read once: hashed while it streams into the archive.
The same files and description always make the same bytes: entries in a fixed order, mtime
0, owner 0:0 with no names, mode 0644 (0755 if executable), a gzip header without a file
name or time, and nothing of the run that made them. A task archive's manifest describes the
task by ``DESCRIPTION_KEYS`` alone; which ticket, attempt, model, tokens and times made the
files is the attempt's record (its stored result, ``swarmd show``), never the archive's.

An archive is written to a temporary file in its own directory, synced, and renamed into
place, so a reader sees a whole archive or none; any failure removes the temporary file.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO

from swarmd.errors import OutputError
from swarmd.outputs.paths import quote_path, walk_files
from swarmd.outputs.workspace import CHUNK_BYTES, read_input_record, sha256_of
from swarmd.text import plain_or_quoted, storable_text

TASK_FORMAT = "swarmd-task-archive/1"
FILES_PREFIX = "files/"
MANIFEST_JSON = "manifest.json"
MANIFEST_TXT = "manifest.txt"
COMPRESS_LEVEL = 6  # gzip's own default, so archives cost what `tar czf` costs
RESERVED_KEYS = frozenset({"format", "files", "file_count", "total_bytes", "skipped"})
DESCRIPTION_KEYS = frozenset({"task", "agent", "refused"})
"""What a task archive's manifest keeps of the metadata it is given: the task's name, its
agent's, and the reply's refused blocks (derived from ``response.md``, which it holds)."""


@dataclass(frozen=True, slots=True)
class ArchiveInfo:
    path: Path
    size: int  # bytes of the archive itself
    sha256: str  # of the archive itself
    file_count: int
    total_bytes: int  # of the files inside, uncompressed
    skipped: tuple[str, ...] = ()  # left out, each with why: symlinks, special files, bad names


def write_task_archive(workspace: Path, dest: Path, *, manifest: Mapping[str, Any]) -> ArchiveInfo:
    """Package the outputs of ``workspace`` as ``dest`` (``outputs/<ticket>/<task>.tar.gz``).

    ``manifest`` describes the task; ``manifest.json`` carries its ``DESCRIPTION_KEYS``
    beside the file list and leaves out the rest (a ticket id, an attempt, a model, usage,
    times: run metadata, which would make two runs' archives of the same outputs differ).
    Files copied in from inputs and still
    unchanged are left out (see ``swarmd.outputs.workspace``). ``OutputError`` names the reason
    when the disk refuses the archive; nothing is left at ``dest`` or beside it then.
    """
    metadata = _checked_metadata(manifest)
    inputs = read_input_record(workspace)
    skipped: list[str] = []
    files: list[dict[str, Any]] = []
    with ArchiveWriter(dest) as archive:
        for path, file in walk_files(workspace, skipped=skipped):
            info = os.fstat(file.fileno())
            if path in inputs:
                if sha256_of(file) == inputs[path]:
                    continue  # an input copied in and left as it was: not this task's output
                file.seek(0)
            executable = bool(info.st_mode & 0o111)
            digest = archive.add_stream(path, file, info.st_size, executable=executable)
            files.append({"path": path, "size": info.st_size, "sha256": digest})
        document = {
            **metadata,
            "format": TASK_FORMAT,
            "files": files,
            "file_count": len(files),
            "total_bytes": sum(entry["size"] for entry in files),
            "skipped": skipped,
        }
        archive.add_bytes(MANIFEST_JSON, manifest_bytes(document))
    return archive.info(len(files), document["total_bytes"], skipped)


def manifest_bytes(document: Mapping[str, Any]) -> bytes:
    """A manifest as stable JSON: sorted keys, so equal manifests are equal bytes."""
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


class ArchiveWriter:
    """A deterministic tar.gz written to a temporary file and renamed to ``dest`` on success."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self._file: BinaryIO | None = None
        self._sink: _Sink | None = None
        self._temp: str | None = None
        self._stack = contextlib.ExitStack()
        self._tar: tarfile.TarFile | None = None

    def __enter__(self) -> ArchiveWriter:
        try:
            self.dest.parent.mkdir(parents=True, exist_ok=True)
            fd, self._temp = tempfile.mkstemp(
                prefix=f".{self.dest.name}.", suffix=".tmp", dir=self.dest.parent
            )
        except OSError as exc:
            raise self._write_error(exc) from exc
        self._file = file = os.fdopen(fd, "wb")
        self._sink = _Sink(file, self)
        # filename="" and mtime=0 keep the gzip header free of names and times.
        gz = gzip.GzipFile(
            filename="", mode="wb", compresslevel=COMPRESS_LEVEL, fileobj=self._sink, mtime=0
        )
        self._stack.enter_context(gz)
        self._tar = self._stack.enter_context(
            tarfile.TarFile(
                fileobj=gz,
                mode="w",
                format=tarfile.PAX_FORMAT,
                encoding="utf-8",
                copybufsize=CHUNK_BYTES,
            )
        )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is not None:
            self._discard()
            return
        assert self._file is not None and self._temp is not None
        try:
            self._stack.close()  # the tar end blocks, then the gzip trailer
            self._file.flush()
            os.fchmod(self._file.fileno(), 0o644)
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._temp, self.dest)
        except OutputError:
            self._discard()
            raise
        except OSError as exc:
            self._discard()
            raise self._write_error(exc) from exc
        _fsync_directory(self.dest.parent)

    def add_stream(self, path: str, file: IO[bytes], size: int, *, executable: bool) -> str:
        """Add ``files/<path>`` with ``size`` bytes read from ``file``; returns their sha256."""
        reader = _HashingReader(file, size, path)
        assert self._tar is not None
        self._tar.addfile(_member_info(FILES_PREFIX + path, size, executable), reader)
        return reader.hexdigest()

    def add_bytes(self, name: str, data: bytes) -> None:
        """Add a top-level member (a manifest)."""
        assert self._tar is not None
        self._tar.addfile(_member_info(name, len(data), False), io.BytesIO(data))

    def info(self, file_count: int, total_bytes: int, skipped: list[str]) -> ArchiveInfo:
        assert self._sink is not None
        return ArchiveInfo(
            path=self.dest,
            size=self._sink.size,
            sha256=self._sink.digest.hexdigest(),
            file_count=file_count,
            total_bytes=total_bytes,
            skipped=tuple(skipped),
        )

    def _discard(self) -> None:
        if self._sink is not None:
            self._sink.failed = True  # closing the gzip stream must not write again
        with contextlib.suppress(Exception):
            self._stack.close()
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        if self._temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temp)

    def _write_error(self, exc: OSError) -> OutputError:
        shown = plain_or_quoted(str(self.dest), 1024)
        return OutputError(f"cannot write the archive {shown}: {exc.strerror or exc}")


class _Sink:
    """The temporary file as gzip sees it: counts and hashes what it writes."""

    def __init__(self, file: BinaryIO, owner: ArchiveWriter) -> None:
        self.file = file
        self.owner = owner
        self.digest = hashlib.sha256()
        self.size = 0
        self.failed = False

    def write(self, data: bytes) -> int:
        if self.failed:
            return len(data)
        try:
            self.file.write(data)
        except OSError as exc:
            self.failed = True
            raise self.owner._write_error(exc) from exc
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass  # the file is flushed and synced once, when the archive is committed


class _HashingReader:
    """Reads exactly ``size`` bytes of a file into the archive, hashing them on the way."""

    def __init__(self, file: IO[bytes], size: int, path: str) -> None:
        self.file = file
        self.remaining = size
        self.path = path
        self.digest = hashlib.sha256()

    def read(self, count: int = -1) -> bytes:
        wanted = self.remaining if count < 0 else min(count, self.remaining)
        data = self.file.read(wanted)
        if len(data) < wanted:
            raise OutputError(f"file {quote_path(self.path)} shrank while it was being packaged")
        self.digest.update(data)
        self.remaining -= len(data)
        return data

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def _member_info(name: str, size: int, executable: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o755 if executable else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _checked_metadata(manifest: Mapping[str, Any]) -> dict[str, Any]:
    reserved = RESERVED_KEYS.intersection(manifest)
    if reserved:
        raise OutputError(f"manifest metadata may not set {', '.join(sorted(reserved))}")
    metadata = storable_json({k: v for k, v in manifest.items() if k in DESCRIPTION_KEYS})
    try:
        manifest_bytes(metadata)
    except (TypeError, ValueError) as exc:
        raise OutputError(f"manifest metadata is not plain JSON data: {exc}") from exc
    return metadata  # type: ignore[no-any-return]


def storable_json(value: Any) -> Any:
    """``value`` with every string made storable as UTF-8: lone surrogates spelt ``\\udcff``.

    A provider's JSON may spell lone surrogates (``"\\ud800"``) and a reply's paths may hold
    them; as they are, they would make the manifest unencodable, and the whole task fail.
    """
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_json(key): storable_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(item) for item in value]
    return value


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory is synced; some filesystems refuse.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
