"""Reading an LLM's reply: the ``<file path="...">`` blocks it wrote, and its reasoning to drop.

A reply carries files as tagged blocks (DESIGN.md §6)::

    <file path="site/index.html">
    ...content...
    </file>

One newline after the opening tag and one before the closing tag belong to the markup, not
the content. A block ends at the first ``</file>``; a block that meets another opening tag
(or the end of the reply) first never closes, and is refused rather than guessed at.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from swarmd.outputs.paths import quote_path
from swarmd.text import storable_text

# The path is bounded so a stray `<file path="` cannot make each search scan the whole reply.
_OPENING = re.compile(r"""<file\s+path\s*=\s*(?:"([^"]{0,5000})"|'([^']{0,5000})')\s*>""")
_CLOSING = "</file>"
# An opening tag the reply ends in the middle of: ``<file path="site/ind``.
_PARTIAL_OPENING = re.compile(r"""<file\s+path\s*=\s*["']?([^"'>]{0,5000})\Z""")
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)


@dataclass(frozen=True, slots=True)
class FileBlock:
    path: str  # as the reply wrote it; checked only when written
    content: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """A block that was not written. Both texts are safe to keep in a manifest as they are:
    ``path`` is the reply's, with lone surrogates spelt out (``\\udcff``); ``reason`` shows the
    path quoted and escaped."""

    path: str
    reason: str  # one sentence naming the path and what was wrong with it

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", storable_text(self.path))


def parse_file_blocks(reply: str) -> tuple[list[FileBlock], list[Refusal]]:
    """The file blocks of ``reply`` in order, and the blocks refused because they never close.

    Linear in the reply's length, however many blocks or stray tags it holds.
    """
    blocks: list[FileBlock] = []
    refused: list[Refusal] = []
    closing_at = 0  # where the next "</file>" starts; -1 once there is none left
    opening = _OPENING.search(reply)
    while opening:
        path = opening.group(1) if opening.group(1) is not None else opening.group(2)
        start = _skip_newline(reply, opening.end())
        following = _OPENING.search(reply, start)
        if closing_at != -1 and closing_at < start:
            closing_at = reply.find(_CLOSING, start)
        if closing_at == -1 or (following is not None and following.start() < closing_at):
            refused.append(Refusal(path, f"file block {quote_path(path)} never closes"))
        else:
            blocks.append(FileBlock(path, _drop_final_newline(reply[start:closing_at])))
        opening = following
    return blocks, refused


def block_left_open(reply: str) -> str | None:
    """The path of the file block ``reply`` ends inside, or ``None`` when it ends outside one.

    A block is left open when its opening tag (whole, or cut short itself) has no closing tag
    after it: what a reply cut at the model's token limit shows when the cut fell in a file.
    The path is the reply's, as far as it got.
    """
    after = max(reply.rfind(_CLOSING), 0)  # a block opened before the last "</file>" closed
    # Only the last "<file" can be a tag cut short: one match attempt, however long the reply.
    tag_at = reply.rfind("<file", after)
    partial = _PARTIAL_OPENING.match(reply, tag_at) if tag_at != -1 else None
    if partial is not None:
        return storable_text(partial.group(1))
    last = deque(_OPENING.finditer(reply, after), maxlen=1)
    if not last:
        return None
    opening = last[0]
    return storable_text(opening.group(1) if opening.group(1) is not None else opening.group(2))


def strip_think_blocks(text: str) -> str:
    """``text`` without ``<think>...</think>`` reasoning (MiniMax, DeepSeek and the like).

    An unclosed ``<think>`` (a reply cut off mid-thought) drops everything after it; a
    ``</think>`` whose opening tag the provider left out drops everything before it.
    """
    text = _THINK_BLOCK.sub("", text)
    opened = text.find("<think>")
    if opened != -1:
        text = text[:opened]
    closed = text.rfind("</think>")
    if closed != -1:
        text = text[closed + len("</think>") :]
    return text.lstrip("\r\n")


def _skip_newline(text: str, index: int) -> int:
    if text.startswith("\r\n", index):
        return index + 2
    if text.startswith("\n", index):
        return index + 1
    return index


def _drop_final_newline(content: str) -> str:
    if content.endswith("\r\n"):
        return content[:-2]
    return content.removesuffix("\n")
