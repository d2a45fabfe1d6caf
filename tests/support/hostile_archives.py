"""Archives built to hurt their reader: each builder writes one hostile ``.tar.gz`` and returns
its path. Shared by the in-process tests of ``verify_archive`` and the CLI cases."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

BLOCK = 512
END = b"\0" * (2 * BLOCK)


def header(
    name: str | bytes,
    *,
    size: int = 0,
    kind: bytes = tarfile.REGTYPE,
    linkname: str = "",
    raw_size: bytes | None = None,
) -> bytes:
    """One ustar header block, checksummed; ``raw_size`` writes the size field as given."""
    info = tarfile.TarInfo("x")
    info.size = size
    info.type = kind
    info.linkname = linkname
    block = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))[:BLOCK]
    encoded = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
    block[0:100] = encoded[:100].ljust(100, b"\0")
    if raw_size is not None:
        block[124:136] = raw_size
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


def member(name: str | bytes, data: bytes = b"", **options: Any) -> bytes:
    return header(name, size=len(data), **options) + padded(data)


def pax(records: dict[str, str]) -> bytes:
    """A pax extended header (type x) carrying ``records`` for the next member."""
    body = b""
    for key, value in records.items():
        line = f" {key}={value}\n".encode()
        length = len(line) + 1
        length += len(str(length)) - 1
        while len(str(length)) + len(line) != length:
            length += 1
        body += str(length).encode() + line
    return member("././@PaxHeader", body, kind=tarfile.XHDTYPE)


def manifest_for(files: dict[str, bytes], **extra: Any) -> bytes:
    entries = [
        {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for path, data in files.items()
    ]
    document = {
        "format": "swarmd-task-archive/1",
        "files": entries,
        "file_count": len(entries),
        "total_bytes": sum(len(data) for data in files.values()),
        "skipped": [],
        **extra,
    }
    return json.dumps(document).encode()


def good_members(files: dict[str, bytes] | None = None) -> bytes:
    files = {"index.html": b"<h1>hi</h1>\n"} if files is None else files
    body = b"".join(member(f"files/{path}", data) for path, data in files.items())
    return body + member("manifest.json", manifest_for(files))


def gz(raw: bytes, level: int = 6) -> bytes:
    return gzip.compress(raw, compresslevel=level, mtime=0)


def zeros_gz(count: int) -> bytes:
    """``count`` zero bytes, gzipped, without holding them all at once."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * min(count, 2**20)
    parts = []
    left = count
    while left:
        part = chunk[: min(left, len(chunk))]
        parts.append(squeeze.compress(part))
        left -= len(part)
    parts.append(squeeze.flush())
    return b"".join(parts)


def _deep_manifest() -> bytes:
    return b'{"files": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def _bomb_member() -> bytes:
    """A 64 GiB member (declared) whose data is a real stream of zeros, cut short at 4 MiB of
    input; then a tar that never ends."""
    size = 64 * 2**30
    head = header("files/bomb.bin", size=size, raw_size=b"\x80" + size.to_bytes(11, "big"))
    return gz(head) + zeros_gz(16 * 2**20)


ARCHIVES: dict[str, Callable[[], bytes]] = {
    "empty-file": lambda: b"",
    "not-gzip": lambda: b"just some text, not an archive\n",
    "gzip-of-garbage": lambda: gz(b"\x01\x02 not a tar at all " * 100),
    "gzip-of-nothing": lambda: gz(b""),
    "plain-tar-not-gzipped": lambda: good_members() + END,
    "truncated-gzip": lambda: gz(good_members() + END)[:-30],
    "truncated-mid-member": lambda: gz((good_members() + END)[:700]),
    "trailing-garbage-after-gzip": lambda: gz(good_members() + END) + b"garbage" * 10,
    "zeros-named-tar-gz": lambda: b"\0" * 100_000,
    "symlink-member": lambda: gz(
        member("files/link", kind=tarfile.SYMTYPE, linkname="/etc/passwd") + good_members() + END
    ),
    "hardlink-member": lambda: gz(
        member("files/hard", kind=tarfile.LNKTYPE, linkname="/etc/shadow") + good_members() + END
    ),
    "device-member": lambda: gz(member("files/dev", kind=tarfile.CHRTYPE) + good_members() + END),
    "fifo-member": lambda: gz(member("files/fifo", kind=tarfile.FIFOTYPE) + good_members() + END),
    "directory-member": lambda: gz(
        member("files/dir/", kind=tarfile.DIRTYPE) + good_members() + END
    ),
    "unknown-type-member": lambda: gz(
        member("files/odd", b"data" * 300, kind=b"Z") + good_members() + END
    ),
    "absolute-member": lambda: gz(
        member("/etc/cron.d/evil", b"* * * * * root sh\n") + good_members() + END
    ),
    "dotdot-member": lambda: gz(member("../../escape", b"x") + good_members() + END),
    "dotdot-under-files": lambda: gz(good_members({"../../etc/x": b"x"}) + END),
    "absolute-under-files": lambda: gz(good_members({"/etc/x": b"x"}) + END),
    "bidi-member-name": lambda: gz(good_members({"evil\u202egnp.exe": b"x"}) + END),
    "non-utf8-member-name": lambda: gz(
        member(b"files/bad\xff\xfe.txt", b"x") + good_members() + END
    ),
    "huge-declared-size": lambda: gz(
        header("files/huge.bin", size=0, raw_size=b"\x80" + (2**50).to_bytes(11, "big")) + END
    ),
    "negative-size": lambda: gz(
        header("files/neg.bin", raw_size=b"\xff" * 12) + good_members() + END
    ),
    "decompression-bomb": _bomb_member,
    "huge-pax-header": lambda: (
        gz(header("././@PaxHeader", size=16 * 2**20, kind=tarfile.XHDTYPE)) + zeros_gz(16 * 2**20)
    ),
    "huge-gnu-longname": lambda: (
        gz(header("././@LongLink", size=16 * 2**20, kind=tarfile.GNUTYPE_LONGNAME))
        + zeros_gz(16 * 2**20)
    ),
    "pax-header-chain": lambda: gz(pax({"comment": "x"}) * 5000 + good_members() + END),
    "pax-sparse-map-bomb": lambda: gz(
        pax(
            {
                "GNU.sparse.major": "1",
                "GNU.sparse.minor": "0",
                "GNU.sparse.name": "files/s",
                "GNU.sparse.realsize": "10",
            }
        )
        + header("files/s", size=2**18)
        + b"99999999999\n"
        + b"0\n" * (2**18 // 2)
        + END
    ),
    "old-gnu-sparse": lambda: gz(header("files/sparse", kind=tarfile.GNUTYPE_SPARSE) + END),
    "manifest-nested-100k": lambda: gz(member("manifest.json", _deep_manifest()) + END),
    "manifest-not-json": lambda: gz(member("manifest.json", b"{not json") + END),
    "manifest-not-utf8": lambda: gz(member("manifest.json", b'{"files": ["\xff"]}') + END),
    "manifest-array": lambda: gz(member("manifest.json", b"[1, 2, 3]") + END),
    "manifest-wrong-types": lambda: gz(
        member("manifest.json", b'{"files": [{"path": 1, "size": "2", "sha256": null}]}') + END
    ),
    "manifest-bool-size": lambda: gz(
        member("files/a", b"a")
        + member("manifest.json", b'{"files": [{"path": "a", "size": true, "sha256": "x"}]}')
        + END
    ),
    "manifest-huge-number": lambda: gz(
        member("manifest.json", b'{"files": [], "file_count": ' + b"9" * 5000 + b"}") + END
    ),
    "manifest-nan": lambda: gz(member("manifest.json", b'{"files": [], "total_bytes": NaN}') + END),
    "manifest-too-large": lambda: gz(
        header("manifest.json", size=40 * 2**20) + b" " * (40 * 2**20) + END, level=1
    ),
    "manifest-millions-of-arrays": lambda: gz(
        member("manifest.json", b"[" + b"[]," * 5_000_000 + b"[]]") + END, level=1
    ),
    "manifest-twice": lambda: gz(good_members() + member("manifest.json", b"{}") + END),
    "manifest-lone-surrogate-path": lambda: gz(
        member("manifest.json", b'{"files": [{"path": "\\udcff", "size": 0, "sha256": ""}]}') + END
    ),
    "manifest-is-symlink": lambda: gz(
        member("manifest.json", kind=tarfile.SYMTYPE, linkname="/etc/passwd") + END
    ),
    "file-listed-twice": lambda: gz(
        member("files/a", b"a")
        + member("files/a", b"a")
        + member("manifest.json", manifest_for({"a": b"a"}))
        + END
    ),
}


def write_archive(directory: Path, name: str) -> Path:
    path = directory / f"{name}.tar.gz"
    path.write_bytes(ARCHIVES[name]())
    return path


def many_members(count: int) -> bytes:
    """``count`` empty regular members, gzipped."""
    stream = io.BytesIO()
    with gzip.GzipFile(fileobj=stream, mode="wb", compresslevel=1, mtime=0) as out:
        for number in range(count):
            out.write(header(f"files/f{number}"))
        out.write(END)
    return stream.getvalue()
