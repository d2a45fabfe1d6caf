"""Reading the file blocks of an LLM reply, and dropping its reasoning."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from swarmd.outputs import FileBlock, block_left_open, parse_file_blocks, strip_think_blocks


def test_block_content_excludes_the_newlines_around_it() -> None:
    blocks, refused = parse_file_blocks('<file path="a.txt">\nline 1\nline 2\n</file>')
    assert blocks == [FileBlock("a.txt", "line 1\nline 2")]
    assert refused == []


def test_inline_block_keeps_its_content_exactly() -> None:
    blocks, _ = parse_file_blocks('Here: <file path="a.txt">  x  </file> done')
    assert blocks == [FileBlock("a.txt", "  x  ")]


def test_crlf_newlines_around_content_are_markup_too() -> None:
    blocks, _ = parse_file_blocks('<file path="a.txt">\r\nbody\r\n</file>')
    assert blocks == [FileBlock("a.txt", "body")]


def test_blocks_are_returned_in_reply_order() -> None:
    reply = "Intro\n<file path=\"b\">2</file>\ntext\n<file path='a'>1</file>\n"
    blocks, _ = parse_file_blocks(reply)
    assert [block.path for block in blocks] == ["b", "a"]


def test_block_that_never_closes_is_refused() -> None:
    blocks, refused = parse_file_blocks('<file path="ok">1</file>\n<file path="cut">\npartial')
    assert blocks == [FileBlock("ok", "1")]
    assert [(r.path, r.reason) for r in refused] == [("cut", 'file block "cut" never closes')]


def test_block_interrupted_by_another_opening_never_closes() -> None:
    blocks, refused = parse_file_blocks('<file path="a">one\n<file path="b">two</file>')
    assert blocks == [FileBlock("b", "two")]
    assert [r.path for r in refused] == ["a"]


def test_empty_block_is_an_empty_file() -> None:
    blocks, _ = parse_file_blocks('<file path="empty"></file>')
    assert blocks == [FileBlock("empty", "")]


def test_reply_without_blocks_has_no_files() -> None:
    assert parse_file_blocks("Just prose, and a </file> stray tag.") == ([], [])


def test_many_unclosed_blocks_parse_in_linear_time() -> None:
    reply = '<file path="x">\n' * 50_000 + '<file path="last">end</file>'
    blocks, refused = parse_file_blocks(reply)
    assert blocks == [FileBlock("last", "end")]
    assert len(refused) == 50_000


def test_think_block_is_removed() -> None:
    text = '<think>maybe <file path="draft">x</file></think>\nAnswer <file path="a">1</file>'
    assert strip_think_blocks(text) == 'Answer <file path="a">1</file>'


def test_unclosed_think_drops_the_rest_of_the_reply() -> None:
    assert strip_think_blocks("Answer\n<think>cut off mid-thought") == "Answer\n"


def test_closing_think_without_opening_drops_what_came_before() -> None:
    assert strip_think_blocks("reasoning...</think>\n\nAnswer") == "Answer"


def test_text_without_think_is_unchanged() -> None:
    assert strip_think_blocks("Answer <b>bold</b>") == "Answer <b>bold</b>"


paths = st.from_regex(r"[a-z0-9_]{1,8}(/[a-z0-9_.-]{1,8}){0,3}", fullmatch=True)
contents = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200).filter(
    lambda text: "<file" not in text and "</file>" not in text and not text.endswith("\r")
)


@given(st.lists(st.tuples(paths, contents), max_size=8), st.text(max_size=40))
def test_blocks_written_in_the_documented_format_parse_back(
    files: list[tuple[str, str]], prose: str
) -> None:
    prose = prose.replace("<", "[")
    reply = prose.join(f'<file path="{path}">\n{content}\n</file>' for path, content in files)
    blocks, refused = parse_file_blocks(reply)
    assert blocks == [FileBlock(path, content) for path, content in files]
    assert refused == []


# -- the block a reply ends inside ------------------------------------------------------------


def test_reply_that_ends_inside_a_block_names_it() -> None:
    reply = '<file path="a.md">\nwhole\n</file>\n<file path="site/index.html">\n<html><bo'
    assert block_left_open(reply) == "site/index.html"


def test_reply_that_ends_inside_an_opening_tag_names_the_path_so_far() -> None:
    assert block_left_open('Here it is:\n<file path="site/ind') == "site/ind"


def test_reply_whose_blocks_all_close_leaves_none_open() -> None:
    assert block_left_open('<file path="a">1</file>\ntext after') is None
    assert block_left_open('<file path="a"></file>') is None
    assert block_left_open("no blocks at all") is None


def test_block_left_open_before_a_later_closed_one_is_not_at_the_end() -> None:
    # Refused as never closing, but the reply did not end inside it.
    assert block_left_open('<file path="a">one\n<file path="b">two</file>') is None


def test_reply_of_a_million_stray_opening_tags_is_read_without_rescanning() -> None:
    assert block_left_open("<file path=" * 1_000_000) == ""
    assert block_left_open(('<file path="' + "a" * 4000 + '">') * 5000) == "a" * 4000
