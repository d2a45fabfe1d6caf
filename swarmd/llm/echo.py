"""``echo/echo``, the offline model: deterministic, instant, and never touches the network.

It answers every request with one file block holding the last user message, so the whole
pipeline (router, llm agent, file blocks, archives) runs with no provider configured. Token
counts are word counts, so costs and usage stay deterministic too.
"""

from __future__ import annotations

import httpx

from swarmd.llm.providers import Provider
from swarmd.llm.types import ChatRequest, ChatResponse, Clock

ECHO_FILE = "answer.md"


class EchoProvider(Provider):
    needs_permit = False  # no network, so no provider's rate limit to respect

    async def complete(
        self,
        client: httpx.AsyncClient,
        label: str,
        model_name: str,
        request: ChatRequest,
        *,
        http_timeout: httpx.Timeout,
        clock: Clock,
    ) -> ChatResponse:
        return answer_offline(label, request)


def answer_offline(label: str, request: ChatRequest) -> ChatResponse:
    """The echo model's answer to ``request``."""
    prompt = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    # A prompt may quote earlier replies; defang their tags so the answer holds one block.
    body = prompt.rstrip().replace("</file>", "&lt;/file>").replace("<file", "&lt;file")
    text = f'<file path="{ECHO_FILE}">\n{body}\n</file>\n'
    words_in = sum(_count_words(m.content) for m in request.messages)
    words_in += _count_words(request.system or "")
    return ChatResponse(
        model=label,
        text=text,
        prompt_tokens=words_in,
        completion_tokens=_count_words(prompt),
        latency_s=0.0,
        raw_finish_reason="stop",
    )


def _count_words(text: str) -> int:
    return len(text.split())
