"""``swarmd.text.quote``: untrusted text shown so that it can neither hide nor spoof."""

from __future__ import annotations

import pytest

from swarmd.text import escape, plain_or_quoted, quote, unsafe_in_line


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain name", '"plain name"'),
        ("a\0b", '"a\\u0000b"'),
        ("a\nb\rc\td", '"a\\nb\\rc\\td"'),
        ("esc\x1b[31m", '"esc\\u001b[31m"'),
        ("del\x7f", '"del\\u007f"'),
        ("csi\x9b", '"csi\\u009b"'),
        ("txt.exe\u202egnp", '"txt.exe\\u202egnp"'),
        ("iso\u2066late\u2069", '"iso\\u2066late\\u2069"'),
        ("zero\u200bwidth\u2060\ufeff", '"zero\\u200bwidth\\u2060\\ufeff"'),
        ("line\u2028para\u2029", '"line\\u2028para\\u2029"'),
        ("bad\udcff", '"bad\\udcff"'),
        ("tag\U000e0041", '"tag\\U000e0041"'),
        ('say "hi" \\ bye', '"say \\"hi\\" \\\\ bye"'),
        ("literal …", '"literal \\u2026"'),
        ("日本語 é", '"日本語 é"'),
    ],
    ids=[
        "plain",
        "nul",
        "newline-cr-tab",
        "ansi-escape",
        "del",
        "c1-csi",
        "bidi-override",
        "bidi-isolates",
        "zero-width",
        "separators",
        "lone-surrogate",
        "tag-character",
        "quotes-and-backslash",
        "literal-ellipsis",
        "non-latin",
    ],
)
def test_quote_escapes_what_would_hide_or_spoof(text: str, shown: str) -> None:
    assert quote(text) == shown


def test_quoted_text_is_always_printable_utf8() -> None:
    every = "".join(chr(code) for code in range(0x3000)) + "\udc80\U000e0001\U0010ffff"
    shown = quote(every, limit=len(every))
    shown.encode("utf-8")  # no lone surrogate survives
    assert all(char.isprintable() for char in shown)


def test_long_text_is_shortened_with_an_ellipsis_inside_the_quotes() -> None:
    assert quote("x" * 1000, limit=10) == '"xxxxxxxxxx…"'
    assert quote("x" * 10, limit=10) == '"xxxxxxxxxx"'


def test_shortening_counts_characters_of_the_original_not_of_the_escapes() -> None:
    assert quote("\0" * 100, limit=3) == '"\\u0000\\u0000\\u0000…"'


def test_escape_keeps_quotes_bare_for_text_inside_a_sentence() -> None:
    assert escape('said "no"\n') == 'said "no"\\n'


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("/tmp/ticket.toml", "/tmp/ticket.toml"),
        ("/tmp/t\u202e.toml", '"/tmp/t\\u202e.toml"'),
        (" lead", '" lead"'),
        ("", '""'),
        ('has"quote', '"has\\"quote"'),
    ],
)
def test_plain_text_stays_bare_and_anything_else_is_quoted(text: str, shown: str) -> None:
    assert plain_or_quoted(text) == shown


@pytest.mark.parametrize(
    ("text", "unsafe"),
    [
        ("Landing page", None),
        ("Family \U0001f468\u200d\U0001f469", None),
        ("tab\there", "\t"),
        ("c1\x85", "\x85"),
        ("rlo\u202e", "\u202e"),
        ("zwsp\u200b", "\u200b"),
        ("bom\ufeff", "\ufeff"),
        ("sur\udcff", "\udcff"),
    ],
)
def test_unsafe_in_line_finds_what_one_line_of_plain_text_may_not_hold(
    text: str, unsafe: str | None
) -> None:
    assert unsafe_in_line(text) == unsafe
