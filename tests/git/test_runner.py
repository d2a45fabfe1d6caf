"""The git runner: a fixed environment, hooks off, one-sentence errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swarmd.git import GitCommandError, GitRunner, Identity, Repository
from swarmd.git.errors import mask_credentials
from tests.support.repos import Person, write

ENV_PRINTER = """#!/bin/sh
printf '%s\\n' "$@" > "{args}"
env > "{env}"
"""


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A stand-in for the git binary that records its arguments and environment."""
    args, env = tmp_path / "args.txt", tmp_path / "env.txt"
    script = write(tmp_path / "fake-git", ENV_PRINTER.format(args=args, env=env))
    script.chmod(0o755)
    return script, args, env


def _environment(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_daemon_commands_run_with_hooks_off_no_user_config_and_a_fixed_identity(
    recorded: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    script, args_file, env_file = recorded
    runner = GitRunner(
        executable=str(script),
        inherited_env={"PATH": os.defpath, "HOME": "/home/pat", "GIT_DIR": "/elsewhere"},
        identity=Identity("Build Bot", "bot@example.org"),
    )

    runner.run(tmp_path, "status")

    args = args_file.read_text().splitlines()
    assert args[:2] == ["-C", str(tmp_path)]
    assert args[-1] == "status"
    assert "core.hooksPath=/dev/null" in args
    env = _environment(env_file)
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert env["GIT_CONFIG_GLOBAL"] == "/dev/null"
    assert env["HOME"] == env["XDG_CONFIG_HOME"] == "/dev/null"
    assert env["GIT_COMMITTER_NAME"] == env["GIT_AUTHOR_NAME"] == "Build Bot"
    assert env["GIT_COMMITTER_EMAIL"] == "bot@example.org"
    assert "GIT_DIR" not in env
    assert "GIT_OPTIONAL_LOCKS" not in env


def test_probes_take_no_optional_locks_and_network_commands_read_the_users_config(
    recorded: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    script, _, env_file = recorded
    runner = GitRunner(executable=str(script), inherited_env={"HOME": "/home/pat"})

    runner.run(tmp_path, "status", read_only=True)
    probe_env = _environment(env_file)
    runner.run(tmp_path, "push", user_config=True)
    push_env = _environment(env_file)

    assert probe_env["GIT_OPTIONAL_LOCKS"] == "0"
    assert push_env["HOME"] == "/home/pat"
    assert "GIT_CONFIG_GLOBAL" not in push_env
    assert "GIT_CONFIG_NOSYSTEM" not in push_env


def test_hooks_run_only_when_the_runner_is_built_with_them(
    recorded: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    script, args_file, _ = recorded

    GitRunner(executable=str(script), run_hooks=True).run(tmp_path, "status")

    assert "core.hooksPath=/dev/null" not in args_file.read_text().splitlines()


def test_the_users_global_config_is_read_only_when_asked(
    project: Repository, person: Person, runner: GitRunner
) -> None:
    write(person.home / ".gitconfig", "[swarmd]\n\tmarker = global\n")

    daemon = runner.run(project.path, "config", "--get", "swarmd.marker", accept=(0, 1))
    network = runner.run(project.path, "config", "--get", "swarmd.marker", user_config=True)

    assert daemon.returncode == 1
    assert network.line() == "global"


def test_the_committer_identity_is_the_runners(project: Repository, runner: GitRunner) -> None:
    ident = runner.run(project.path, "var", "GIT_COMMITTER_IDENT").line()

    assert ident.startswith("swarmd <swarmd@localhost> ")


def test_a_failure_is_one_sentence_with_gits_own_words(
    project: Repository, runner: GitRunner
) -> None:
    with pytest.raises(GitCommandError) as caught:
        runner.run(project.path, "rev-parse", "--verify", "no-such-branch")

    message = str(caught.value)
    assert message.startswith("git rev-parse failed (exit 128): fatal: ")
    assert "\n" not in message
    assert caught.value.returncode == 128


def test_worktree_subcommands_are_named_in_full(project: Repository, runner: GitRunner) -> None:
    with pytest.raises(GitCommandError, match=r"^git worktree remove failed"):
        runner.run(project.path, "worktree", "remove", "/nowhere")


def test_a_long_error_is_bounded_and_credentials_in_urls_are_masked() -> None:
    stderr = "fatal: unable to access 'https://x-token:ghp_s3cr3t@forge.example/r.git/'\n" + (
        "hint: more\n" * 200
    )

    error = GitCommandError("push", 128, stderr)

    assert "ghp_s3cr3t" not in str(error)
    assert "https://***@forge.example/r.git/" in str(error)
    assert len(error.stderr) <= 400
    assert (
        mask_credentials("ssh://git@host/x and http://a:b@c/")
        == "ssh://***@host/x and http://***@c/"
    )


def test_a_git_that_hangs_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    script = write(tmp_path / "hanging-git", "#!/bin/sh\nexec tail -f /dev/null\n")
    script.chmod(0o755)
    runner = GitRunner(executable=str(script))

    with pytest.raises(GitCommandError, match=r"timed out after 0\.2 s"):
        runner.run(tmp_path, "fetch", timeout=0.2)


def test_a_missing_git_binary_is_a_git_error(tmp_path: Path) -> None:
    with pytest.raises(GitCommandError, match="cannot run"):
        GitRunner(executable=str(tmp_path / "no-git")).run(tmp_path, "status")
