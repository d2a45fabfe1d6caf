"""Outputs: safe writes into a workspace, the files of a reply, and archives with manifests.

``blocks``      the ``<file path="...">`` blocks of an LLM reply, and its ``<think>`` to drop
``paths``       the path rules, and reads and writes that never leave the workspace
``workspace``   a task's workspace: its inputs, the reply files it writes, the outputs it keeps
``archive``     task archives: deterministic tar.gz with ``manifest.json``
``verify``      reading archives back: manifests, and verification that takes any file
``delivery``    a ticket's delivery archive, merged from its task archives
"""

from swarmd.outputs.archive import ArchiveInfo, write_task_archive
from swarmd.outputs.blocks import (
    FileBlock,
    Refusal,
    block_left_open,
    parse_file_blocks,
    strip_think_blocks,
)
from swarmd.outputs.delivery import TaskArchiveRef, write_delivery_archive
from swarmd.outputs.paths import check_relpath, quote_path, safe_write
from swarmd.outputs.verify import read_archive_manifest, verify_archive
from swarmd.outputs.workspace import (
    OutputFile,
    WriteReport,
    collect_outputs,
    prepare_workspace,
    read_input_record,
    write_reply_files,
)

__all__ = [
    "ArchiveInfo",
    "FileBlock",
    "OutputFile",
    "Refusal",
    "TaskArchiveRef",
    "WriteReport",
    "block_left_open",
    "check_relpath",
    "collect_outputs",
    "parse_file_blocks",
    "prepare_workspace",
    "quote_path",
    "read_archive_manifest",
    "read_input_record",
    "safe_write",
    "strip_think_blocks",
    "verify_archive",
    "write_delivery_archive",
    "write_reply_files",
    "write_task_archive",
]
