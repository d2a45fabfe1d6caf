"""Hostile LLM replies through ``swarmd run-ticket FILE --wait`` against the loopback fake
provider: a refused block is reported and the rest of the reply kept; the manifest stays
valid UTF-8 JSON; a reply too large to read fails over to the next model in bounded memory;
nothing the provider says reaches the terminal raw."""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_llm import FakeLLMServer, Fault
from tests.support.hostile import FAILED, Batch, Outcome, Sandbox, assert_clean, open_batch
from tests.support.llm_env import last_results

MiB = 2**20
GOOD = '<file path="ok.txt">\nfine\n</file>\n'


@dataclass(frozen=True)
class Reply:
    faults: tuple[Fault, ...]  # what the primary model answers, in turn
    fallback: bool = False  # whether a second model (which answers well) is in the chain


REPLIES: dict[str, Reply] = {
    "lone-surrogate-path": Reply((Fault.ok('<file path="bad\udcff.txt">x</file>\n' + GOOD),)),
    "nul-in-path": Reply((Fault.ok('<file path="a\0b.txt">x</file>\n' + GOOD),)),
    "absolute-path": Reply((Fault.ok('<file path="/tmp/swarmd-hostile-pwned">x</file>\n' + GOOD),)),
    "climbing-path": Reply((Fault.ok('<file path="../../../../../pwned.txt">x</file>\n' + GOOD),)),
    "bidi-path": Reply((Fault.ok('<file path="invoice\u202efdp.exe">x</file>\n' + GOOD),)),
    "escape-sequence-path": Reply(
        (Fault.ok('<file path="\x1b]0;pwned\x07.txt">x</file>\n' + GOOD),)
    ),
    "long-path": Reply((Fault.ok('<file path="' + "d/" * 2400 + 'x">x</file>\n' + GOOD),)),
    "reserved-path": Reply((Fault.ok('<file path=".swarmd/inputs.json">{}</file>\n' + GOOD),)),
    "unclosed-block": Reply((Fault.ok(GOOD + '<file path="cut.txt">\nhalf a file'),)),
    "lone-surrogates-in-content": Reply(
        (Fault.ok('<file path="ok.txt">\n\ud800 \udfff\n</file>\n'),)
    ),
    "thousands-of-blocks": Reply(
        (Fault.ok("".join(f'<file path="f/{n}.txt">{n}</file>\n' for n in range(3000))),)
    ),
    "too-large-with-fallback": Reply((Fault.ok("x" * 48 * MiB),), fallback=True),
    "too-large-alone": Reply((Fault.ok("x" * 48 * MiB),)),
    "provider-words-with-escapes": Reply(
        (Fault.http(400, message="bad \x1b[2J\x1b]0;pwned\x07 \u202eevil " + "w" * 2000),)
    ),
    "provider-error-of-a-megabyte": Reply((Fault.http(400, message="\x1b[2J" * 200_000),)),
    "provider-error-with-lone-surrogate": Reply(
        (Fault.http(500, message="\ud800 broken", retry_after=0),), fallback=True
    ),
}

REFUSED = {"too-large-alone", "provider-words-with-escapes", "provider-error-of-a-megabyte"}
FINE = set(REPLIES) - REFUSED


def _model(case: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", case)


def _run_reply(server: FakeLLMServer, case: str) -> Callable[[Sandbox], Outcome]:
    reply = REPLIES[case]

    def run(box: Sandbox) -> Outcome:
        server.script(_model(case), *reply.faults, default=reply.faults[-1])
        env = box.env(
            OPENAI_BASE_URL=server.openai_base_url,
            SWARMD_PRIMARY_MODEL=f"openai/{_model(case)}",
            SWARMD_API_RATE_LIMIT_RPM="60000",
            SWARMD_MAX_ATTEMPTS="1",
        )
        if reply.fallback:
            env.update(
                ANTHROPIC_BASE_URL=server.anthropic_base_url,
                SWARMD_FALLBACK_MODEL=f"anthropic/{_model(case)}-fallback",
            )
            server.script(f"{_model(case)}-fallback", default=Fault.ok(GOOD))
        ticket = box.ticket({"title": "t", "agent": "llm", "prompt": "Write ok.txt"})
        return box.run("run-ticket", str(ticket), "--wait", env=env, timeout=90, measure=True)

    return run


@pytest.fixture(scope="module")
def reply_batch(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    fake_llm: FakeLLMServer,
) -> Iterator[Batch]:
    batch = open_batch(
        request, tmp_path_factory, {case: _run_reply(fake_llm, case) for case in REPLIES}
    )
    yield batch
    batch.close()


def manifest_of(home: Path) -> dict[str, Any]:
    with tarfile.open(home / "outputs" / "1" / "main.tar.gz") as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        raw = member.read()
    document: dict[str, Any] = json.loads(raw.decode("utf-8"))  # strict UTF-8
    return document


def files_of(home: Path) -> list[str]:
    with tarfile.open(home / "outputs" / "1" / "main.tar.gz") as tar:
        return sorted(name.removeprefix("files/") for name in tar.getnames())


@pytest.mark.parametrize("case", sorted(FINE))
def test_hostile_reply_keeps_the_rest_of_the_work(reply_batch: Batch, case: str) -> None:
    box, outcome = reply_batch.outcome(case)
    assert outcome.returncode == 0, outcome.describe()
    assert_clean(outcome)
    assert "\x1b" not in outcome.output and "\x07" not in outcome.output
    files = files_of(box.home)
    manifest = manifest_of(box.home)
    if case == "thousands-of-blocks":
        assert manifest["file_count"] == 1001  # 1,000 blocks and response.md
        assert "past the cap of 1,000 per reply" in manifest["refused"][0]["reason"]
        return
    assert "ok.txt" in files and "response.md" in files
    for refusal in manifest.get("refused", []):
        assert refusal["reason"].isprintable()
    if case == "lone-surrogate-path":
        assert manifest["refused"] == [
            {"path": "bad\\udcff.txt", "reason": 'path "bad\\udcff.txt" is not valid UTF-8'}
        ]


@pytest.mark.parametrize("case", ["too-large-with-fallback"])
def test_reply_too_large_is_not_read_and_the_next_model_answers(
    reply_batch: Batch, case: str
) -> None:
    box, outcome = reply_batch.outcome(case)
    assert outcome.returncode == 0, outcome.describe()
    answer = last_results(box.home)["main"]
    assert answer["model"] == "anthropic/too-large-with-fallback-fallback"
    assert [t["outcome"] for t in answer["tries"]] == ["too_large", "ok"]
    # 48 MiB of answer, read whole, peaked at ~4.4 times that in the worker.
    assert outcome.peak_mb is not None and outcome.peak_mb < 150, outcome.peak_mb


@pytest.mark.parametrize("case", ["too-large-alone"])
def test_reply_too_large_for_the_only_model_fails_naming_the_cap(
    reply_batch: Batch, case: str
) -> None:
    _, outcome = reply_batch.outcome(case)
    assert outcome.returncode == FAILED, outcome.describe()
    assert_clean(outcome)
    assert "the answer is larger than 32 MiB, the most swarmd reads of one answer" in outcome.stdout
    assert outcome.peak_mb is not None and outcome.peak_mb < 150, outcome.peak_mb


@pytest.mark.parametrize("case", ["provider-words-with-escapes", "provider-error-of-a-megabyte"])
def test_provider_words_never_reach_the_terminal_raw(reply_batch: Batch, case: str) -> None:
    _, outcome = reply_batch.outcome(case)
    assert outcome.returncode == FAILED, outcome.describe()
    assert_clean(outcome)
    assert "\x1b" not in outcome.output and "\x07" not in outcome.output
    assert "\u202e" not in outcome.output
    assert "refused the request: HTTP 400 bad request" in outcome.stdout
    if case == "provider-words-with-escapes":
        assert "(bad \\u001b[2J\\u001b]0;pwned\\u0007 \\u202eevil www" in outcome.stdout
    assert len(outcome.output) < 5000
