"""Untrusted text in messages: quoted, escaped and shortened, so it can neither hide nor spoof.

Every message that echoes something a user or a model wrote (a task name, a path in a reply,
the value of a setting, a provider's error text) shows it through ``quote``. Escaped are the
characters a terminal or a log viewer would act on or hide rather than show:

- control characters, C0 and C1 (``\\n``, ``\\t``, ``\\u001b`` ...), and DEL;
- bidirectional overrides, embeddings, isolates and marks (U+202A-U+202E, U+2066-U+2069,
  U+200E, U+200F, U+061C), which reorder what follows them on screen ("Trojan Source");
- zero-width and other invisible format characters (U+200B-U+200D, U+2060, U+FEFF, tags);
- line and paragraph separators (U+2028, U+2029), and every space but the ASCII one (a
  no-break space would pass for it);
- lone surrogates (a name on disk that is not UTF-8 decodes to them; they cannot be printed);
- unassigned code points, whose rendering nobody can predict.

The escapes are JSON's where JSON has one (``\\n``, ``\\u0000``), so a quoted string reads as
a JSON string literal would; code points past U+FFFF are shown as ``\\U000e0041``. A literal
"…" is escaped too, so the one ``quote`` adds always means "shortened".

This module is a leaf: it imports nothing of swarmd.
"""

from __future__ import annotations

import unicodedata

ELLIPSIS = "…"
DEFAULT_LIMIT = 80
"""Characters of the original text shown before it is shortened."""

BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
"""Marks, embeddings, overrides and isolates: each changes the order in which text shows."""
_LINE_UNSAFE = BIDI_CONTROLS | frozenset("\u200b\u2060\ufeff")

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Zl", "Zp"})
"""Control, format (bidi, zero-width, tags), surrogate, unassigned, line and paragraph
separator: everything that is not shown as itself."""


def quote(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """``text`` in double quotes, every hidden character escaped, shortened past ``limit``.

    ``limit`` counts characters of ``text``; a shortened text ends in "…" inside the quotes.
    """
    shortened = len(text) > limit
    shown = escape(text[:limit] if shortened else text, quotes=True)
    return f'"{shown}{ELLIPSIS if shortened else ""}"'


def escape(text: str, *, quotes: bool = False) -> str:
    """``text`` with every hidden character escaped (and ``"`` and ``\\`` when ``quotes``).

    For text shown bare inside a sentence, such as a provider's own error message.
    """
    if text.isascii() and text.isprintable() and not (quotes and ('"' in text or "\\" in text)):
        return text  # the common case, without a walk over every character
    return "".join(_escape_char(char, quotes) for char in text)


def unsafe_in_line(text: str) -> str | None:
    """The first character that may not stand in one line of plain text, or ``None``.

    Refused: control characters (newlines included), line and paragraph separators, lone
    surrogates, bidirectional controls, and the zero-width characters that only hide
    (U+200B, U+2060, U+FEFF). Joiners (U+200C, U+200D) stay: scripts and emoji need them.
    """
    if text.isascii() and text.isprintable():
        return None
    for char in text:
        if char in _LINE_UNSAFE or unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp"):
            return char
    return None


def is_plain(text: str) -> bool:
    """Whether ``text`` shows exactly as itself: nothing escaped, no quote or backslash."""
    return escape(text, quotes=True) == text


def plain_or_quoted(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """``text`` as it is when it is plain and within ``limit``, else ``quote(text, limit)``.

    For names users recognise best bare, such as the path of the file they passed.
    """
    if len(text) <= limit and is_plain(text) and text.strip() == text and text:
        return text
    return quote(text, limit)


def storable_text(text: str) -> str:
    """``text``, with each lone surrogate spelt out as ``\\udcff`` so it encodes as UTF-8.

    For text kept rather than shown (a manifest, a report): everything else stays as it is.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _escape_char(char: str, quotes: bool) -> str:
    if char in "\n\r\t" or (quotes and char in _SHORT_ESCAPES):
        return _SHORT_ESCAPES[char]
    category = unicodedata.category(char)
    hidden = category in _HIDDEN_CATEGORIES or (category == "Zs" and char != " ")
    if hidden or (quotes and char == ELLIPSIS):
        code = ord(char)
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    return char
