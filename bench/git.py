"""Repository tickets: what a task's worktree costs, and many tasks on one repository.

    python bench/git.py [--files 2000] [--mib 40] [--rounds 9] [--swarm-rounds 20]

1. A repository of ``--files`` files (``--mib`` MiB) is made; a task's worktree (swarmd's own
   ``prepare_worktree``: branch, worktree, checkout) is timed against ``git clone --local`` of
   the same repository, alternating, and the extra disk each takes is measured (``du``).
2. ``--swarm-rounds`` rounds of ``swarmd run-ticket`` on a ticket of 32 command tasks on that
   repository at concurrency 10, the whole command timed from start to exit: every round
   must end with 32 task commits on its branch, no lock failure, and no worktree or task
   branch left.

Prints a table and writes ``bench/results/git.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from swarmd.daemon.repos import RepoWork
from swarmd.git.binding import RepoBinding
from swarmd.git.registry import RepoEntry
from swarmd.home import HomeLayout

GIT_ENV = {
    "PATH": os.environ["PATH"],
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.org",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.org",
}


def git(cwd: Path, *args: str, home: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(cwd), *args],
        env={**GIT_ENV, "HOME": str(home)},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def make_repository(path: Path, files: int, total_bytes: int, home: Path) -> str:
    rng = random.Random(7)
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch=main", home=home)
    size = max(1, total_bytes // files)
    for index in range(files):
        target = path / f"src{index % 25:02d}" / f"module{index:05d}.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        words = " ".join(
            rng.choice(("def", "class", "return", "value", "name")) for _ in range(size // 6)
        )
        target.write_text(f"# module {index}\n{words}\n")
    git(path, "add", "--all", home=home)
    git(path, "commit", "--quiet", "--message", "bench repository", home=home)
    return git(path, "rev-parse", "HEAD", home=home).strip()


def disk_bytes(path: Path) -> int:
    done = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0])


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench_worktrees(
    root: Path, repo: Path, base: str, rounds: int, home: Path
) -> dict[str, object]:
    layout = HomeLayout(root / "swarmd-home")
    work = RepoWork(layout, env={"PATH": os.environ["PATH"]})
    binding = RepoBinding(RepoEntry(name="bench", path=repo), "main", base, "branch")
    worktree_s: list[float] = []
    clone_s: list[float] = []
    worktree_disk: list[int] = []
    clone_disk: list[int] = []
    git_dir_before = disk_bytes(repo / ".git")
    for n in range(rounds):
        started = time.perf_counter()
        prepared = work.prepare_worktree(binding, 1, f"t{n}", [])
        worktree_s.append(time.perf_counter() - started)
        worktree_disk.append(disk_bytes(prepared.path))
        clone = root / f"clone{n}"
        started = time.perf_counter()
        git(root, "clone", "--quiet", "--local", str(repo), str(clone), home=home)
        clone_s.append(time.perf_counter() - started)
        clone_disk.append(disk_bytes(clone))
    metadata = (disk_bytes(repo / ".git") - git_dir_before) / rounds
    # The measured worktrees are the bench's own: gone before the swarm counts leftovers.
    for n in range(rounds):
        path = layout.worktree(1, f"t{n}")
        git(repo, "worktree", "remove", "--force", str(path), home=home)
        git(repo, "branch", "--quiet", "-D", binding.task_branch(1, f"t{n}"), home=home)
    return {
        "worktree_seconds": spread(worktree_s),
        "clone_local_seconds": spread(clone_s),
        "worktree_bytes": statistics.median(worktree_disk) + metadata,
        "clone_local_bytes": statistics.median(clone_disk),
        "worktree_metadata_bytes": metadata,
    }


def bench_swarm(root: Path, repo: Path, rounds: int, home: Path) -> dict[str, object]:
    registry = root / "repos.toml"
    registry.write_text(f'[repos.bench]\npath = "{repo}"\nbase = "main"\n')
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SWARMD_")},
        "SWARMD_HOME": str(root / "swarm-home"),
        "SWARMD_REPOS_FILE": str(registry),
        "SWARMD_MAX_CONCURRENT_WORKERS": "10",
        "SWARMD_MIN_FREE_MEMORY_MB": "0",
        "SWARMD_MAX_LOAD": "1000",
        "SWARMD_SPAWN_SETTLE_SECONDS": "0",
    }
    seconds: list[float] = []
    failures = 0
    for n in range(1, rounds + 1):
        tasks = [
            {
                "name": f"t{i:02d}",
                "agent": "command",
                "command": ["sh", "-c", f"echo {n}.{i} > f{i:02d}.txt"],
            }
            for i in range(32)
        ]
        ticket = root / f"round{n}.json"
        ticket.write_text(json.dumps({"title": f"round {n}", "repo": "bench", "tasks": tasks}))
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "swarmd", "run-ticket", str(ticket), "--wait"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds.append(time.perf_counter() - started)
        trailers = git(
            repo,
            "log",
            "--format=%(trailers:key=Swarmd-Task,valueonly)",
            f"main..swarmd/{n}",
            home=home,
        ).split()
        if done.returncode != 0 or len(trailers) != 32:
            failures += 1
            print(f"round {n}: exit {done.returncode}, {len(trailers)} commits", file=sys.stderr)
    branches = git(
        repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/swarmd/tasks", home=home
    )
    worktrees = git(repo, "worktree", "list", "--porcelain", home=home).count("worktree ") - 1
    log = Path(env["SWARMD_HOME"]) / "logs" / "swarmd.jsonl"
    events = [json.loads(line).get("event") for line in log.read_text().splitlines() if line]
    return {
        "rounds": rounds,
        "tasks_per_round": 32,
        "run_ticket_seconds": spread(seconds),
        "failed_rounds": failures,
        "leftover_task_branches": len(branches.split()),
        "leftover_worktrees": worktrees,
        # Why a worktree stayed, when one did: the daemon says so in its log.
        "worktrees_kept_events": events.count("worktree_kept"),
        "delivery_failures": events.count("delivery_failed"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--mib", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--swarm-rounds", type=int, default=20)
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="swarmd-bench-git-") as scratch:
        root = Path(scratch)
        home = root / "person"
        home.mkdir()
        repo = root / "repo"
        print(f"building a repository of {args.files:,} files, {args.mib} MiB ...", flush=True)
        base = make_repository(repo, args.files, args.mib * 1024 * 1024, home)
        worktrees = bench_worktrees(root, repo, base, args.rounds, home)
        swarm = bench_swarm(root, repo, args.swarm_rounds, home) if args.swarm_rounds else {}
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
        "files": args.files,
        "mib": args.mib,
        **worktrees,
        "swarm": swarm,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "git.json").write_text(json.dumps(results, indent=2) + "\n")
    for label, key in (
        ("task worktree", "worktree_seconds"),
        ("git clone --local", "clone_local_seconds"),
    ):
        figure = worktrees[key]
        assert isinstance(figure, dict)
        low, high = figure["min"] * 1000, figure["max"] * 1000
        print(f"{label:18} {figure['median'] * 1000:8.1f} ms  ({low:.1f}-{high:.1f})")
    worktree_mib = float(str(worktrees["worktree_bytes"])) / 2**20
    clone_mib = float(str(worktrees["clone_local_bytes"])) / 2**20
    print(f"extra disk: worktree {worktree_mib:.1f} MiB, clone {clone_mib:.1f} MiB")
    if swarm:
        s = swarm["run_ticket_seconds"]
        assert isinstance(s, dict)
        print(
            f"{swarm['rounds']} rounds x 32 tasks at 10: run-ticket {s['median']:.2f} s "
            f"({s['min']:.2f}-{s['max']:.2f}); failed rounds {swarm['failed_rounds']}, "
            f"leftover branches {swarm['leftover_task_branches']}, "
            f"worktrees {swarm['leftover_worktrees']}"
        )
    return 0 if not swarm or swarm["failed_rounds"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
