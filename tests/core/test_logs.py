import json
import logging
from pathlib import Path

import pytest
import structlog

from swarmd.logs import REDACTED, bind_task, configure_logging, get_logger


def read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_events_are_json_lines_with_bound_ids(tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "swarmd.jsonl"
    configure_logging(log_path=log_path, console=False)
    bind_task(4, "copy", attempt=2)
    try:
        get_logger().info("attempt_finished", exit_reason="ok")
    finally:
        structlog.contextvars.clear_contextvars()
    [entry] = read_lines(log_path)
    assert entry["event"] == "attempt_finished"
    assert entry["ticket"] == 4 and entry["task"] == "copy" and entry["attempt"] == 2
    assert entry["level"] == "info" and "timestamp" in entry


def test_configured_secrets_never_reach_a_line(tmp_path: Path) -> None:
    secret = "supersecret-key-value-42"
    log_path = tmp_path / "swarmd.jsonl"
    configure_logging(log_path=log_path, console=False, secrets=[secret])
    log = get_logger()
    log.info("request_sent", url=f"https://x/?key={secret}", headers={"authorization": "Bearer x"})
    log.error("provider_failed", error=ValueError(f"bad key {secret}"), nested=[{"k": secret}])
    text = log_path.read_text()
    assert secret not in text
    assert REDACTED in text
    assert "Bearer x" not in text


def test_key_shaped_strings_are_redacted_even_when_not_configured(tmp_path: Path) -> None:
    log_path = tmp_path / "swarmd.jsonl"
    configure_logging(log_path=log_path, console=False)
    get_logger().info("oops", detail="sk-proj-ABCDEFGHIJKLMNOPQRSTUV")
    assert "ABCDEFGHIJKLMNOPQRSTUV" not in log_path.read_text()


def test_log_file_rotates_by_size(tmp_path: Path) -> None:
    log_path = tmp_path / "swarmd.jsonl"
    configure_logging(log_path=log_path, console=False, max_bytes=4096, backups=2)
    log = get_logger()
    for i in range(400):
        log.info("filler", i=i, pad="x" * 50)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["swarmd.jsonl", "swarmd.jsonl.1", "swarmd.jsonl.2"]
    assert all((tmp_path / f).stat().st_size <= 4096 + 200 for f in files)


def test_reconfiguring_does_not_stack_handlers(tmp_path: Path) -> None:
    configure_logging(log_path=tmp_path / "a.jsonl", console=False)
    configure_logging(log_path=tmp_path / "a.jsonl", console=False)
    assert len(logging.getLogger("swarmd").handlers) == 1


def test_a_line_is_rendered_once_for_the_file_and_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    renders = 0
    render = structlog.stdlib.ProcessorFormatter.format

    def counted(self: structlog.stdlib.ProcessorFormatter, record: logging.LogRecord) -> str:
        nonlocal renders
        renders += 1
        return render(self, record)

    monkeypatch.setattr(structlog.stdlib.ProcessorFormatter, "format", counted)
    log_path = tmp_path / "swarmd.jsonl"
    configure_logging(log_path=log_path, console=True)  # stderr is not a terminal here
    get_logger().info("worker_started", task="1.a")
    [entry] = read_lines(log_path)
    assert entry["event"] == "worker_started"
    assert json.loads(capsys.readouterr().err) == entry
    # The file's size check, the file and stderr: one rendering for the three.
    assert renders == 1
