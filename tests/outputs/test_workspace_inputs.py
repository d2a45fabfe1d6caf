"""A task's workspace: it starts from its needs' outputs, and keeps only what it made."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from swarmd.errors import UnsafePathError
from swarmd.outputs import collect_outputs, prepare_workspace, read_input_record


def make_workspace(root: Path, name: str, files: dict[str, str]) -> Path:
    workspace = root / name
    workspace.mkdir(parents=True, exist_ok=True)
    for relpath, content in files.items():
        path = workspace / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return workspace


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def output_paths(workspace: Path, **kwargs: object) -> list[str]:
    return [output.path for output in collect_outputs(workspace, **kwargs)]  # type: ignore[arg-type]


def test_prepare_creates_a_missing_workspace(tmp_path: Path) -> None:
    prepare_workspace(tmp_path / "work" / "1" / "a", [])
    assert (tmp_path / "work" / "1" / "a").is_dir()


def test_prepare_empties_the_workspace_in_place(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path, "ws", {"old.txt": "stale", "dir/deep.txt": "stale"})
    (workspace / "link").symlink_to(tmp_path)
    inode = workspace.stat().st_ino
    prepare_workspace(workspace, [])
    assert os.listdir(workspace) == []  # nothing was needed: no record of inputs either
    assert read_input_record(workspace) == {}
    assert workspace.stat().st_ino == inode  # a worker whose cwd it is keeps a valid cwd
    assert tmp_path.exists()  # the symlink was removed, not followed


def test_prepare_refuses_a_workspace_that_is_a_symlink(tmp_path: Path) -> None:
    target = make_workspace(tmp_path, "target", {"keep.txt": "keep"})
    (tmp_path / "ws").symlink_to(target)
    with pytest.raises(UnsafePathError, match="is not a directory"):
        prepare_workspace(tmp_path / "ws", [])
    assert (target / "keep.txt").exists()


def test_inputs_are_copied_to_the_top_of_the_workspace(tmp_path: Path) -> None:
    upstream = make_workspace(tmp_path, "copy", {"index.md": "# Hi", "img/logo.svg": "<svg/>"})
    workspace = tmp_path / "html"
    prepare_workspace(workspace, [("copy", upstream)])
    assert (workspace / "index.md").read_text() == "# Hi"
    assert (workspace / "img" / "logo.svg").read_text() == "<svg/>"


def test_input_copies_share_nothing_with_the_upstream_workspace(tmp_path: Path) -> None:
    upstream = make_workspace(tmp_path, "copy", {"index.md": "original"})
    workspace = tmp_path / "html"
    prepare_workspace(workspace, [("copy", upstream)])
    (workspace / "index.md").write_text("edited downstream")
    assert (upstream / "index.md").read_text() == "original"
    assert (workspace / "index.md").stat().st_ino != (upstream / "index.md").stat().st_ino


def test_input_keeps_its_executable_bit(tmp_path: Path) -> None:
    upstream = make_workspace(tmp_path, "build", {"run.sh": "#!/bin/sh\n"})
    (upstream / "run.sh").chmod(0o755)
    workspace = tmp_path / "next"
    prepare_workspace(workspace, [("build", upstream)])
    assert os.access(workspace / "run.sh", os.X_OK)


def test_inputs_leave_out_junk_and_symlinks(tmp_path: Path) -> None:
    upstream = make_workspace(
        tmp_path, "a", {"out.txt": "o", "run.log": "l", "__pycache__/m.pyc": "c"}
    )
    (upstream / "link").symlink_to("/etc")
    workspace = tmp_path / "b"
    prepare_workspace(workspace, [("a", upstream)])
    assert output_paths(workspace) == ["out.txt"]
    assert not (workspace / "link").exists()


def test_later_input_replaces_an_earlier_one(tmp_path: Path) -> None:
    first = make_workspace(tmp_path, "first", {"shared.txt": "first"})
    second = make_workspace(tmp_path, "second", {"shared.txt": "second"})
    workspace = tmp_path / "third"
    prepare_workspace(workspace, [("first", first), ("second", second)])
    assert (workspace / "shared.txt").read_text() == "second"


def test_untouched_inherited_copy_does_not_undo_an_edit_in_a_diamond(tmp_path: Path) -> None:
    top = make_workspace(tmp_path, "top", {"page.html": "v1"})
    left, right = tmp_path / "left", tmp_path / "right"
    prepare_workspace(left, [("top", top)])
    prepare_workspace(right, [("top", top)])
    (left / "page.html").write_text("v2 by left")
    (right / "other.txt").write_text("right's own")
    bottom = tmp_path / "bottom"
    prepare_workspace(bottom, [("left", left), ("right", right)])
    assert (bottom / "page.html").read_text() == "v2 by left"
    assert (bottom / "other.txt").read_text() == "right's own"


def test_inputs_carry_the_outputs_of_everything_upstream(tmp_path: Path) -> None:
    first = make_workspace(tmp_path, "first", {"a.txt": "a"})
    second = tmp_path / "second"
    prepare_workspace(second, [("first", first)])
    (second / "b.txt").write_text("b")
    third = tmp_path / "third"
    prepare_workspace(third, [("second", second)])
    assert sorted(output_paths(third)) == ["a.txt", "b.txt"]


def test_input_record_names_each_copied_file_and_its_origin(tmp_path: Path) -> None:
    first = make_workspace(tmp_path, "first", {"a.txt": "a"})
    second = tmp_path / "second"
    prepare_workspace(second, [("first", first)])
    (second / "b.txt").write_text("b")
    third = tmp_path / "third"
    prepare_workspace(third, [("second", second)])
    assert read_input_record(third) == {"a.txt": sha("a"), "b.txt": sha("b")}
    record = json.loads((third / ".swarmd" / "inputs.json").read_text())
    assert record["files"]["a.txt"]["task"] == "first"
    assert record["files"]["b.txt"]["task"] == "second"


def test_workspace_without_inputs_has_an_empty_record(tmp_path: Path) -> None:
    assert read_input_record(tmp_path) == {}


def test_collect_hashes_each_output(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path, "ws", {"a.txt": "hello", "empty": ""})
    outputs = collect_outputs(workspace)
    assert [(o.path, o.size, o.sha256) for o in outputs] == [
        ("a.txt", 5, sha("hello")),
        ("empty", 0, sha("")),
    ]
    assert outputs[0].abs_path == workspace / "a.txt"


def test_collect_orders_paths_by_component(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path, "ws", {"a-c": "", "a/b": "", "B": "", "a.txt": ""})
    assert output_paths(workspace) == ["B", "a/b", "a-c", "a.txt"]


def test_collect_leaves_out_junk(tmp_path: Path) -> None:
    junk = {
        "build.log": "",
        "pkg/__pycache__/m.cpython-311.pyc": "",
        ".pytest_cache/v": "",
        ".mypy_cache/x": "",
        "web/node_modules/left-pad/index.js": "",
        ".git/HEAD": "",
        ".swarmd/inputs.json": '{"files": {}}',
    }
    workspace = make_workspace(tmp_path, "ws", {**junk, "pkg/m.py": "", "web/app.js": ""})
    assert output_paths(workspace) == ["pkg/m.py", "web/app.js"]


def test_collect_keeps_git_when_asked(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path, "ws", {".git/HEAD": "ref", "a": ""})
    assert output_paths(workspace, include_git=True) == [".git/HEAD", "a"]


def test_collect_skips_symlinks_and_special_files_and_says_so(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path, "ws", {"real.txt": "r"})
    (workspace / "to-root").symlink_to("/")
    (workspace / "to-file").symlink_to(workspace / "real.txt")
    os.mkfifo(workspace / "pipe")
    skipped: list[str] = []
    assert output_paths(workspace, skipped=skipped) == ["real.txt"]
    assert skipped == [
        '"pipe" is not a regular file',
        '"to-file" is a symlink',
        '"to-root" is a symlink',
    ]


def test_collect_skips_names_a_reply_could_not_write(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path, "ws", {"line\nbreak.txt": "", "ok": ""})
    os.close(os.open(os.path.join(os.fsencode(workspace), b"bad\xff"), os.O_CREAT | os.O_WRONLY))
    skipped: list[str] = []
    assert output_paths(workspace, skipped=skipped) == ["ok"]
    assert skipped == ['"bad\\udcff" is not valid UTF-8', '"line\\nbreak.txt" holds a newline']


def test_collect_leaves_out_unchanged_inputs_only(tmp_path: Path) -> None:
    upstream = make_workspace(tmp_path, "up", {"kept.txt": "same", "edited.txt": "before"})
    workspace = tmp_path / "ws"
    prepare_workspace(workspace, [("up", upstream)])
    (workspace / "edited.txt").write_text("after")
    (workspace / "new.txt").write_text("new")
    inputs = read_input_record(workspace)
    assert output_paths(workspace, exclude_inputs=inputs) == ["edited.txt", "new.txt"]
