"""Packaging speed: ``write_task_archive`` against ``tar czf`` on the same tree, in the same run.

    python bench/package.py [--files 1000] [--total-mib 100] [--rounds 3]

Builds a workspace of mixed-size files (half random bytes, half text, so gzip has work to
do on both), archives it with swarmd and with GNU tar (gzip at its default level 6, as
swarmd uses), alternating the two so both meet the same page cache and the same machine
load. Prints a table and writes ``bench/results/package.json``. The target: swarmd at most
1.5x the time of ``tar czf``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from swarmd.outputs import verify_archive, write_task_archive

MiB = 1024 * 1024
TARGET_RATIO = 1.5
WORDS = ("agent", "swarm", "ticket", "task", "queue", "worker", "daemon", "archive", "manifest")


def make_tree(root: Path, files: int, total_bytes: int, seed: int = 7) -> list[int]:
    """``files`` files under ``root`` summing to ``total_bytes``, sizes spread log-normally."""
    rng = random.Random(seed)
    weights = [rng.lognormvariate(0, 1.5) for _ in range(files)]
    scale = total_bytes / sum(weights)
    sizes = [max(1, int(weight * scale)) for weight in weights]
    sizes[-1] += total_bytes - sum(sizes)
    text = " ".join(rng.choice(WORDS) for _ in range(300_000)).encode()
    for index, size in enumerate(sizes):
        path = root / f"dir{index % 20:02d}" / f"sub{index % 7}" / f"file{index:04d}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            remaining = size
            while remaining:
                block = min(remaining, 64 * 1024)
                half = block // 2
                start = rng.randrange(len(text) - block)
                out.write(rng.randbytes(half) + text[start : start + block - half])
                remaining -= block
    return sizes


def time_swarmd(tree: Path, dest: Path) -> float:
    started = time.perf_counter()
    write_task_archive(tree, dest, manifest={"ticket": 1, "task": "bench"})
    return time.perf_counter() - started


def time_tar(tree: Path, dest: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["tar", "czf", str(dest), "-C", str(tree), "."], check=True)
    return time.perf_counter() - started


def tool_version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError:
        return "not found"
    return (done.stdout or done.stderr).splitlines()[0].strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--total-mib", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if shutil.which("tar") is None:
        print("GNU tar is needed for the comparison", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="swarmd-bench-") as scratch:
        root = Path(scratch)
        tree = root / "tree"
        print(f"building {args.files:,} files, {args.total_mib} MiB in all ...", flush=True)
        sizes = make_tree(tree, args.files, args.total_mib * MiB)
        swarmd_times: list[float] = []
        tar_times: list[float] = []
        # One warm-up of each fills the page cache, so neither pays for the first read.
        time_swarmd(tree, root / "warm.tar.gz")
        time_tar(tree, root / "warm-tar.tar.gz")
        for round_number in range(args.rounds):
            swarmd_times.append(time_swarmd(tree, root / f"swarmd{round_number}.tar.gz"))
            tar_times.append(time_tar(tree, root / f"tar{round_number}.tar.gz"))
        started = time.perf_counter()
        problems = verify_archive(root / "swarmd0.tar.gz")
        verify_seconds = time.perf_counter() - started
        swarmd_size = (root / "swarmd0.tar.gz").stat().st_size
        tar_size = (root / "tar0.tar.gz").stat().st_size
        identical = all(
            (root / f"swarmd{n}.tar.gz").read_bytes() == (root / "swarmd0.tar.gz").read_bytes()
            for n in range(args.rounds)
        )

    swarmd_median = statistics.median(swarmd_times)
    tar_median = statistics.median(tar_times)
    ratio = swarmd_median / tar_median
    results = {
        "files": args.files,
        "total_bytes": sum(sizes),
        "smallest_file": min(sizes),
        "largest_file": max(sizes),
        "rounds": args.rounds,
        "swarmd_seconds": swarmd_times,
        "tar_czf_seconds": tar_times,
        "swarmd_median_seconds": round(swarmd_median, 3),
        "tar_czf_median_seconds": round(tar_median, 3),
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
        "swarmd_archive_bytes": swarmd_size,
        "tar_archive_bytes": tar_size,
        "swarmd_mib_per_second": round(sum(sizes) / MiB / swarmd_median, 1),
        "verify_seconds": round(verify_seconds, 3),
        "verify_problems": problems,
        "byte_identical_across_rounds": identical,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "tar": tool_version(["tar", "--version"]),
            "gzip": tool_version(["gzip", "--version"]),
        },
    }
    rows = [
        ("files", f"{args.files:,} ({min(sizes):,} to {max(sizes):,} bytes)"),
        ("total", f"{sum(sizes) / MiB:.0f} MiB"),
        ("swarmd write_task_archive", f"{swarmd_median:.2f} s (median of {args.rounds})"),
        ("tar czf", f"{tar_median:.2f} s (median of {args.rounds})"),
        ("ratio", f"{ratio:.2f}x (target <= {TARGET_RATIO}x)"),
        ("archive size swarmd / tar", f"{swarmd_size / MiB:.1f} / {tar_size / MiB:.1f} MiB"),
        ("verify_archive", f"{verify_seconds:.2f} s, {len(problems)} problems"),
        ("byte-identical across rounds", "yes" if identical else "NO"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "package.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if ratio <= TARGET_RATIO and not problems and identical else 1


if __name__ == "__main__":
    sys.exit(main())
