"""The llm agent: asks the model chain, keeps the reply, writes its file blocks.

Runs inside the worker. Rate permits and cooldowns are the daemon's, so the router's broker
here forwards ``acquire`` and ``report`` over the worker's channel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swarmd.llm import (
    ChainFailedError,
    ChatRequest,
    Endpoint,
    Outcome,
    ProviderConfig,
    RequestRejectedError,
    RequestTimeouts,
    Router,
    RouterResult,
    create_http_client,
    raise_refusal,
)
from swarmd.models import ExitReason
from swarmd.outputs import (
    block_left_open,
    quote_path,
    read_input_record,
    strip_think_blocks,
    write_reply_files,
)
from swarmd.text import escape, quote
from swarmd.wire.channel import ACQUIRE_CALL, REPORT_CALL, WorkerCalls
from swarmd.wire.job import Job, LLMSettings
from swarmd.wire.result import AgentResult

MAX_INPUT_CHARS = 64 * 1024
"""How much of the needed tasks' files goes into the prompt, in all."""


class ChannelBroker:
    """A ``PermitBroker`` that asks the daemon over the worker's channel."""

    def __init__(self, calls: WorkerCalls) -> None:
        self._calls = calls

    async def acquire(self, model: str, *, deadline: float) -> None:
        raise_refusal(await self._calls.call(ACQUIRE_CALL, model=model, deadline=deadline))

    async def report(self, model: str, outcome: Outcome) -> None:
        await self._calls.call(REPORT_CALL, model=model, outcome=outcome.to_dict())


def provider_config_from_job(llm: LLMSettings) -> ProviderConfig:
    return ProviderConfig(
        endpoints={
            name: Endpoint(e.base_url, e.api_key, dict(e.headers))
            for name, e in llm.endpoints.items()
        },
        aliases=dict(llm.aliases),
        prices=dict(llm.prices),
    )


def needs_tls(config: ProviderConfig, chain: tuple[str, ...]) -> bool:
    """Whether any endpoint the chain can reach speaks https (or is unknown)."""
    for model in chain:
        endpoint = config.endpoints.get(config.provider_name(model))
        if endpoint is not None and not endpoint.base_url.startswith("http://"):
            return True
    return False


def build_prompt(job: Job) -> str:
    """The task prompt, then the text of the files the needed tasks produced, capped."""
    prompt = job.prompt or ""
    inherited = sorted(read_input_record(Path(job.workspace)))
    if not inherited:
        return prompt
    parts = [prompt, "", "Files from the tasks this one builds on:"]
    budget = MAX_INPUT_CHARS
    for relpath in inherited:
        if budget <= 0:
            parts.append(f"(more files left out: {len(inherited)} in all)")
            break
        try:
            text = (Path(job.workspace) / relpath).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # binary or unreadable: the agent still has it in its workspace
        shown = text[:budget]
        budget -= len(shown)
        cut = "" if len(shown) == len(text) else "\n(cut)"
        parts.append(f'<file path="{relpath}">\n{shown}{cut}\n</file>')
    return "\n".join(parts)


def describe_result(result: RouterResult) -> dict[str, Any]:
    """The answer's report (``swarmd.wire.report``): model, tries, usage, cost, and a cut.

    ``prompt_tokens`` counts the whole prompt; when the provider read or wrote its prompt
    cache, ``usage`` also shows how many of those tokens it wrote and read.
    """
    response = result.response
    usage: dict[str, int] = {
        "prompt_tokens": response.prompt_tokens,
        "completion_tokens": response.completion_tokens,
    }
    if response.cache_creation_tokens or response.cache_read_tokens:
        usage["cache_creation_input_tokens"] = response.cache_creation_tokens
        usage["cache_read_input_tokens"] = response.cache_read_tokens
    if response.cache_creation_1h_tokens:
        usage["cache_creation_1h_input_tokens"] = response.cache_creation_1h_tokens
    details: dict[str, Any] = {
        "model": response.model,
        "tries": [t.to_dict() for t in result.tries],
        "usage": usage,
        "latency_s": round(response.latency_s, 3),
        "cost_usd": result.cost_usd,
    }
    if response.truncated:
        details["truncated"] = True
        details["finish_reason"] = response.raw_finish_reason
    return details


async def ask_models(
    job: Job, calls: WorkerCalls, *, prompt: str | None = None, system: str | None = None
) -> RouterResult:
    """One answer from the job's model chain, within the job's deadline."""
    llm = job.llm or LLMSettings()
    total = llm.request_timeout_seconds
    request = ChatRequest.from_prompt(
        prompt if prompt is not None else build_prompt(job),
        system=system or job.agent.system_prompt,
        max_tokens=job.agent.max_tokens,
    )
    config = provider_config_from_job(llm)
    async with create_http_client(tls=needs_tls(config, job.model_chain)) as client:
        router = Router(
            client,
            config,
            ChannelBroker(calls),
            fallback_on_rate_limit=llm.fallback_on_rate_limit,
            timeouts=RequestTimeouts(connect=10.0, read=total, total=total),
        )
        return await router.complete(request, job.model_chain, deadline=job.deadline)


async def run_llm(job: Job, calls: WorkerCalls) -> AgentResult:
    try:
        result = await ask_models(job, calls)
    except ChainFailedError as exc:
        return AgentResult(
            ok=False,
            error=str(exc),
            retryable=not isinstance(exc, RequestRejectedError),
            details={"tries": [t.to_dict() for t in exc.tries]},
        )
    return keep_answer(job, result)


def keep_answer(job: Job, result: RouterResult) -> AgentResult:
    """Write the answer's files into the workspace, and report them.

    An answer the token limit cut inside a file block fails the attempt (``TRUNCATED``,
    retryable): the whole blocks before the cut are written, but the cut file would be
    delivered short.
    """
    details = describe_result(result)
    reply = result.response.full_text
    report = write_reply_files(Path(job.workspace), reply, record_dir=job.records_dir)
    details["files_written"] = list(report.written)
    details["refused"] = [{"path": r.path, "reason": r.reason} for r in report.refused]
    cut = block_left_open(strip_think_blocks(reply)) if result.response.truncated else None
    if cut is not None:
        return AgentResult(
            ok=False,
            error=describe_cut(result, cut, job.agent.max_tokens),
            details=details,
            reason=ExitReason.TRUNCATED,
        )
    return AgentResult(ok=True, details=details)


def describe_cut(result: RouterResult, path: str, max_tokens: int) -> str:
    """Why an answer cut at the token limit fails its attempt: the file it lost, in a line."""
    response = result.response
    reason = quote(response.raw_finish_reason or "", 40)
    return (
        f"{escape(response.model)} stopped at its token limit (max_tokens {max_tokens}, "
        f"finish reason {reason}) inside the file block {quote_path(path)}, which is cut "
        "short; a named agent's max_tokens in agents.toml raises the limit"
    )
