"""A task's workspace: the inputs it starts from, the reply files it writes, the outputs it keeps.

Layout of ``work/<ticket>/<task>/``::

    <files>                 the outputs of the tasks it needs, then whatever the task writes
    response.md             an llm task's whole reply
    .swarmd/inputs.json     which files came from inputs, with their sha256 and origin task
                            (absent when none did: most tasks need nothing)

Inputs are copied, never linked, so no two workspaces share a writable file. Each needed
task's workspace is copied in dependency order, and a later input's file replaces an earlier
one's, except where the later task only inherited that file unchanged: then the version the
earlier input carries stands (in a diamond, one branch's edit is not undone by the other's
untouched copy). A task therefore sees the outputs of everything upstream of it. Its archive
holds only what it wrote or changed: files still byte-identical to an input are left out.
Deleting an inherited file is not carried downstream.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

from swarmd.errors import OutputError, UnsafePathError
from swarmd.outputs.blocks import FileBlock, Refusal, parse_file_blocks, strip_think_blocks
from swarmd.outputs.paths import (
    INTERNAL_DIR,
    check_relpath,
    format_size,
    open_for_write,
    quote_path,
    safe_write,
    walk_files,
)

MiB = 1024 * 1024
RESPONSE_FILE = "response.md"
INPUT_RECORD = f"{INTERNAL_DIR}/inputs.json"
CHUNK_BYTES = MiB


@dataclass(frozen=True, slots=True)
class WriteReport:
    """What ``write_reply_files`` did: the paths written, and each block it refused."""

    written: list[str] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class OutputFile:
    path: str  # relative to the workspace, "/"-separated
    size: int
    sha256: str
    abs_path: Path


def write_reply_files(
    workspace: Path,
    reply: str,
    *,
    max_file_bytes: int = 10 * MiB,
    max_files: int = 1000,
    max_total_bytes: int = 100 * MiB,
    record_dir: Path | None = None,
) -> WriteReport:
    """Keep ``reply`` as ``response.md`` (in ``record_dir``, by default the workspace) and
    write its file blocks into ``workspace``.

    Blocks inside ``<think>`` reasoning are not written. A block is refused, and reported,
    when its path breaks the rules or meets a symlink, when it is over ``max_file_bytes``,
    when it would take the reply past ``max_total_bytes``, beyond the first ``max_files``
    blocks, or when it never closes. A later block for the same path replaces an earlier one.
    A full disk raises ``OutputError``: that is the host's failure, not the reply's.
    """
    report = WriteReport()
    response = reply.encode("utf-8", "replace")
    if len(response) > max_total_bytes:
        response = response[:max_total_bytes]
        report.refused.append(
            Refusal(
                RESPONSE_FILE, f"the reply is over {format_size(max_total_bytes)}; kept its start"
            )
        )
    safe_write(record_dir or workspace, RESPONSE_FILE, response)
    blocks, never_closed = parse_file_blocks(strip_think_blocks(reply))
    report.refused.extend(never_closed[:max_files])
    if len(blocks) > max_files:
        extra = len(blocks) - max_files
        report.refused.append(
            Refusal(
                blocks[max_files].path,
                f"{extra:,} file blocks past the cap of {max_files:,} per reply were not written",
            )
        )
    total = 0
    for path, block in _chosen_blocks(blocks[:max_files], report.refused).items():
        data = _encoded_within(block.content, max_file_bytes)
        if data is None:
            reason = f"file {quote_path(path)} is over the cap of {format_size(max_file_bytes)}"
            report.refused.append(Refusal(block.path, reason))
            continue
        if total + len(data) > max_total_bytes:
            reason = (
                f"file {quote_path(path)} would take the reply past {format_size(max_total_bytes)}"
            )
            report.refused.append(Refusal(block.path, reason))
            continue
        try:
            safe_write(workspace, path, data)
        except UnsafePathError as exc:
            report.refused.append(Refusal(block.path, str(exc)))
            continue
        total += len(data)
        report.written.append(path)
    return report


def prepare_workspace(workspace: Path, inputs: Sequence[tuple[str, Path]]) -> None:
    """Empty ``workspace`` (creating it) and copy in each needed task's workspace, in order.

    ``inputs`` are ``(task name, its workspace)`` in dependency order; see the module's
    docstring for how they merge. The copy leaves out junk, symlinks and unsafe names as an
    archive would, and records what it placed in ``.swarmd/inputs.json`` (nothing placed,
    nothing written: a task that needs none, most of them, skips ~1 ms of a forked worker's
    CPU; an absent record reads as an empty one).
    """
    _empty_directory(workspace)
    placed: dict[str, dict[str, str]] = {}
    for task, source in inputs:
        inherited = _read_record(source)
        for path, file in walk_files(source):
            origin = inherited.get(path)
            if origin is not None and path in placed:
                if sha256_of(file) == origin["sha256"]:
                    continue  # an unchanged copy: the earlier input's version stands
                file.seek(0)
            mode = 0o755 if os.fstat(file.fileno()).st_mode & 0o111 else 0o644
            with open_for_write(workspace, path, mode=mode) as out:
                digest = _copy_hashing(file, out)
            if origin is not None and origin["sha256"] == digest:
                placed[path] = origin  # still the upstream task's file: keep its origin
            else:
                placed[path] = {"sha256": digest, "task": task}
    if not placed:
        return
    record = json.dumps({"files": placed}, indent=1, sort_keys=True, ensure_ascii=False)
    safe_write(workspace, INPUT_RECORD, record.encode("utf-8"))


def read_input_record(workspace: Path) -> dict[str, str]:
    """``{path: sha256}`` of the files ``prepare_workspace`` copied in; ``{}`` if none."""
    return {path: entry["sha256"] for path, entry in _read_record(workspace).items()}


def collect_outputs(
    workspace: Path,
    *,
    exclude_inputs: Mapping[str, str] | None = None,
    include_git: bool = False,
    skipped: list[str] | None = None,
) -> list[OutputFile]:
    """The regular files of ``workspace`` that are outputs, in path order, hashed.

    Junk (``*.log``, caches, ``node_modules``, ``.git`` unless ``include_git``, ``.swarmd/``)
    is left out; so are symlinks, special files and unsafe names, each described in
    ``skipped``; and so is each file whose sha256 equals its entry in ``exclude_inputs``.
    """
    outputs: list[OutputFile] = []
    for path, file in walk_files(workspace, include_git=include_git, skipped=skipped):
        sha256 = sha256_of(file)
        if exclude_inputs is not None and exclude_inputs.get(path) == sha256:
            continue
        outputs.append(OutputFile(path, file.tell(), sha256, workspace / path))
    return outputs


def _chosen_blocks(blocks: Sequence[FileBlock], refused: list[Refusal]) -> dict[str, FileBlock]:
    """Blocks by normalised path, the last one for each path winning; bad paths refused."""
    chosen: dict[str, FileBlock] = {}
    for block in blocks:
        try:
            path = check_relpath(block.path)
        except UnsafePathError as exc:
            refused.append(Refusal(block.path, str(exc)))
            continue
        if path == RESPONSE_FILE or path.split("/")[0] == INTERNAL_DIR:
            refused.append(Refusal(block.path, f"path {quote_path(path)} is reserved by swarmd"))
            continue
        chosen[path] = block
    return chosen


def _encoded_within(content: str, limit: int) -> bytes | None:
    """``content`` as UTF-8, or ``None`` if that is over ``limit`` bytes."""
    if len(content) > limit:  # every character is at least one byte: no need to encode
        return None
    data = content.encode("utf-8", "replace")
    return data if len(data) <= limit else None


def _empty_directory(workspace: Path) -> None:
    try:
        info = workspace.lstat()
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise OutputError(f"cannot open the workspace {workspace}: {exc.strerror}") from exc
    try:
        if info is None:
            workspace.mkdir(parents=True, exist_ok=True)
            return
        if not stat.S_ISDIR(info.st_mode):
            raise UnsafePathError(f"the workspace {workspace} is not a directory")
        # Emptied in place, not replaced: the worker's cwd is this directory.
        with os.scandir(workspace) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
    except OSError as exc:
        raise OutputError(f"cannot empty the workspace {workspace}: {exc.strerror}") from exc


def _read_record(workspace: Path) -> dict[str, dict[str, str]]:
    try:
        raw = (workspace / INPUT_RECORD).read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise OutputError(f"cannot read {workspace / INPUT_RECORD}: {exc.strerror}") from exc
    try:
        files: Any = json.loads(raw)["files"]
        return {str(path): {"sha256": e["sha256"], "task": e["task"]} for path, e in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise OutputError(f"{workspace / INPUT_RECORD} is damaged: {exc}") from exc


def sha256_of(file: IO[bytes]) -> str:
    """The sha256 of the rest of ``file``, read in chunks."""
    digest = hashlib.sha256()
    while chunk := file.read(CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


def _copy_hashing(source: BinaryIO, target: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := source.read(CHUNK_BYTES):
        digest.update(chunk)
        target.write(chunk)
    return digest.hexdigest()
