"""The delivery archive: a ticket's finished work, merged from its task archives.

``outputs/<ticket>/delivery.tar.gz`` holds the files of every task that delivered any, merged
in dependency order: where two tasks wrote the same path, the later task's file is the one
delivered, and the replacement is listed. ``manifest.json`` (for scripts) and
``manifest.txt`` (for people) also account for the tasks that delivered nothing: failed,
skipped or cancelled ones. Each copied file is checked against its task's manifest on the way.
"""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmd.errors import OutputError
from swarmd.outputs.archive import (
    FILES_PREFIX,
    MANIFEST_JSON,
    MANIFEST_TXT,
    ArchiveInfo,
    ArchiveWriter,
    manifest_bytes,
)
from swarmd.outputs.paths import format_size, quote_path
from swarmd.outputs.verify import member_file, read_archive_manifest
from swarmd.text import escape

DELIVERY_FORMAT = "swarmd-delivery/1"


@dataclass(frozen=True, slots=True)
class TaskArchiveRef:
    """One task of the ticket, as the delivery sees it."""

    name: str
    state: str  # the task's final state: succeeded, dead, skipped, cancelled, ...
    archive: Path | None = None  # its task archive; None when it delivered nothing
    error: str | None = None  # why it failed, for the people reading manifest.txt


def write_delivery_archive(
    dest: Path, tasks: Sequence[TaskArchiveRef], *, ticket: Mapping[str, Any]
) -> ArchiveInfo:
    """Merge the task archives of ``tasks`` (in dependency order) into ``dest``.

    ``ticket`` is the metadata manifest.json carries under ``"ticket"`` (id, title, state).
    ``OutputError`` if a task archive is unreadable or disagrees with its own manifest, or the
    disk refuses the write; nothing is left at ``dest`` then.
    """
    listed = [read_archive_manifest(ref.archive) if ref.archive else None for ref in tasks]
    owner: dict[str, int] = {}
    replaced: list[dict[str, str]] = []
    for index, manifest in enumerate(listed):
        for entry in manifest["files"] if manifest else ():
            earlier = owner.get(entry["path"])
            if earlier is not None:
                replaced.append(
                    {
                        "path": entry["path"],
                        "task": tasks[index].name,
                        "replaced": tasks[earlier].name,
                    }
                )
            owner[entry["path"]] = index
    files: list[dict[str, Any]] = []
    with ArchiveWriter(dest) as archive:
        for index, (ref, manifest) in enumerate(zip(tasks, listed, strict=True)):
            if ref.archive is None or manifest is None:
                continue
            wanted = {
                entry["path"]: entry for entry in manifest["files"] if owner[entry["path"]] == index
            }
            if wanted:  # an archive with nothing to give is not read a second time
                files.extend(_copy_task_files(archive, ref, wanted))
        document = {
            "format": DELIVERY_FORMAT,
            "ticket": dict(ticket),
            "tasks": _task_entries(tasks, listed, files),
            "files": files,
            "replaced": replaced,
            "file_count": len(files),
            "total_bytes": sum(entry["size"] for entry in files),
        }
        archive.add_bytes(MANIFEST_JSON, manifest_bytes(document))
        archive.add_bytes(MANIFEST_TXT, describe_delivery(document).encode("utf-8"))
    return archive.info(len(files), document["total_bytes"], [])


def describe_delivery(document: Mapping[str, Any]) -> str:
    """``manifest.txt``: the delivery manifest as people read it."""
    ticket = document["ticket"]
    heading = "Ticket"
    if "id" in ticket:
        heading += f" {ticket['id']}"
    if "title" in ticket:
        heading += f": {_one_line(str(ticket['title']))}"
    tasks = document["tasks"]
    lines = [heading]
    if "state" in ticket:
        lines.append(f"State: {ticket['state']}")
    lines += [
        f"{_count(len(tasks), 'task')}, {_count(document['file_count'], 'file')}, "
        f"{format_size(document['total_bytes'])} in all",
        "",
        "Tasks, in dependency order:",
    ]
    width = max((len(task["name"]) for task in tasks), default=0)
    for task in tasks:
        if task["archive"] is None:
            outcome = "delivered nothing"
            if task["error"]:
                outcome += f": {_one_line(task['error'])}"
        else:
            outcome = f"{_count(task['delivered'], 'file')}, {format_size(task['bytes'])}"
            if task["delivered"] < task["files"]:
                outcome += f" ({task['files'] - task['delivered']} replaced by later tasks)"
        lines.append(f"  {task['name']:<{width}}  {task['state']:<10} {outcome}")
    if document["replaced"]:
        lines += ["", "Replaced files (the later task's version is delivered):"]
        lines += [
            f"  {entry['path']}: {entry['task']} replaced {entry['replaced']}"
            for entry in document["replaced"]
        ]
    lines += ["", "Files (under files/):"]
    lines += [
        f"  {entry['path']}  {format_size(entry['size'])}  from {entry['task']}"
        for entry in document["files"]
    ]
    return "\n".join(lines) + "\n"


def _copy_task_files(
    archive: ArchiveWriter, ref: TaskArchiveRef, wanted: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Stream the ``wanted`` files of one task archive into ``archive``, checking each hash."""
    assert ref.archive is not None
    copied: list[dict[str, Any]] = []
    try:
        with tarfile.open(ref.archive, mode="r|gz") as tar:
            for member in tar:
                path = member.name.removeprefix(FILES_PREFIX)
                entry = wanted.get(path) if member.name.startswith(FILES_PREFIX) else None
                if entry is None or not member.isreg():
                    continue
                source = member_file(tar, member)
                executable = bool(member.mode & 0o111)
                digest = archive.add_stream(path, source, member.size, executable=executable)
                if digest != entry["sha256"] or member.size != entry["size"]:
                    raise OutputError(
                        f"the archive of task {quote_path(ref.name)} is damaged: "
                        f"file {quote_path(path)} does not match its manifest"
                    )
                copied.append(
                    {"path": path, "size": member.size, "sha256": digest, "task": ref.name}
                )
    except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
        raise OutputError(f"cannot read the archive of task {quote_path(ref.name)}: {exc}") from exc
    missing = set(wanted) - {entry["path"] for entry in copied}
    if missing:
        raise OutputError(
            f"the archive of task {quote_path(ref.name)} is damaged: "
            f"file {quote_path(min(missing))} is in its manifest but not in the archive"
        )
    return copied


def _task_entries(
    tasks: Sequence[TaskArchiveRef],
    listed: Sequence[Mapping[str, Any] | None],
    delivered: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    counts: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for entry in delivered:
        counts[entry["task"]] = counts.get(entry["task"], 0) + 1
        sizes[entry["task"]] = sizes.get(entry["task"], 0) + entry["size"]
    return [
        {
            "name": ref.name,
            "state": ref.state,
            "archive": ref.archive.name if ref.archive else None,
            "files": len(manifest["files"]) if manifest else 0,
            "delivered": counts.get(ref.name, 0),
            "bytes": sizes.get(ref.name, 0),
            "error": ref.error,
        }
        for ref, manifest in zip(tasks, listed, strict=True)
    ]


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def _one_line(text: str) -> str:
    """``text`` as one line people can ``cat`` safely: a task's error may quote anything."""
    return escape(" ".join(text.split()))
