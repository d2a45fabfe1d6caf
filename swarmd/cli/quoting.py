"""Untrusted text as the command line shows it: one line, nothing hidden, never cut silently.

Ticket titles, task errors, a command's output, archive member names and environment
variable names come from outside swarmd. Shown raw, a newline forges a line, an escape
sequence rewrites the terminal, and a bidi control reorders what the eye reads. Here every
control, format (bidi, zero-width) and line-separator character is written as its Python
escape, and text longer than its bound ends with an ellipsis.
"""

from __future__ import annotations

import unicodedata

ELLIPSIS = "…"

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def escape_char(char: str) -> str:
    """``char`` itself, or its escape when it would be invisible or act on the terminal."""
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    if unicodedata.category(char) not in _HIDDEN_CATEGORIES:
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str, limit: int | None = None) -> str:
    """``text`` on one line with hidden characters escaped; past ``limit`` characters, cut
    with an ellipsis (the ellipsis counts towards the limit)."""
    if text.isprintable() and (limit is None or len(text) <= limit):
        return text
    return _escaped(text, limit)


def literal(text: str, limit: int | None = None) -> str:
    """``text`` as a quoted literal (``'abc'``, as Python writes it), cut as ``printable``."""
    return printable(repr(text), limit)


def _escaped(text: str, limit: int | None) -> str:
    pieces: list[str] = []
    size = 0
    for char in text:
        piece = escape_char(char)
        if limit is not None and size + len(piece) > limit:
            while pieces and size > limit - 1:  # make room for the ellipsis
                size -= len(pieces.pop())
            return "".join(pieces) + ELLIPSIS
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces)
