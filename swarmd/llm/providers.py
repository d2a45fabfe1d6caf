"""Providers: how each family of models is spoken to over plain httpx.

A model is named ``provider/model``; the prefix picks the provider (after aliases, so
``openai-codex/gpt-5`` can be served by ``openai``):

- ``openai``     Chat Completions, ``POST {base}/chat/completions``, ``Authorization: Bearer``
- ``anthropic``  Messages, ``POST {base}/v1/messages``, ``x-api-key`` + ``anthropic-version``
- ``minimax``    OpenAI-compatible, but errors can arrive in HTTP 200 bodies as ``base_resp``
- ``ollama``     its OpenAI-compatible ``/v1/chat/completions`` at ``OLLAMA_HOST``, no key
- ``echo``       the offline model (``swarmd.llm.echo``): no network at all
- any other prefix with a configured ``base_url``: a generic OpenAI-compatible server
  (vLLM, OpenRouter, a llama.cpp server)

Each provider sends exactly one request per call: retries belong to the router alone.
httpx exceptions are translated here, at the edge, into ``swarmd.llm.errors``.

An answer is read as a stream and never past ``MAX_RESPONSE_BYTES`` (32 MiB, decoded): a
larger one fails that request as ``ResponseTooLargeError``, which moves on to the next
model. An error answer is read up to ``MAX_ERROR_BODY_BYTES``; past that its status alone
classifies it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from swarmd.llm.errors import (
    MalformedResponseError,
    ModelCallError,
    RequestTimeoutError,
    ResponseTooLargeError,
    UnreachableError,
    describe_transport_error,
    error_for_minimax,
    error_for_status,
    parse_retry_after,
    shown_detail,
)
from swarmd.llm.provider_config import Endpoint
from swarmd.llm.types import ChatRequest, ChatResponse, Clock, strip_reasoning

ANTHROPIC_VERSION = "2023-06-01"
MAX_RESPONSE_BYTES = 32 * 2**20
"""The largest answer read: a reply is held ~4 times over while it is decoded and written."""
MAX_ERROR_BODY_BYTES = 64 * 2**10


@dataclass(frozen=True, slots=True)
class ParsedAnswer:
    """What a provider reads from a success body, before the router's bookkeeping."""

    text: str
    prompt_tokens: int  # cached ones included
    completion_tokens: int
    finish_reason: str | None
    cache_creation_tokens: int = 0
    cache_creation_1h_tokens: int = 0
    cache_read_tokens: int = 0


class Provider:
    """Sends one chat request to one model and returns its answer or a classified error."""

    needs_permit = True  # does a request spend the global rate limit?

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
        """Answer ``request`` as ``model_name``; ``label`` is the chain's ``provider/model``
        name, used in the answer and in errors; ``clock`` (wall-clock) resolves the HTTP
        dates of Retry-After headers."""
        raise NotImplementedError


class HTTPProvider(Provider):
    """The shape every HTTP provider shares: build, send once, classify, parse."""

    def __init__(self, endpoint: Endpoint, *, max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.endpoint = endpoint
        self.max_response_bytes = max_response_bytes
        self._secrets = (endpoint.api_key,) if endpoint.api_key else ()

    def build_request(
        self, model_name: str, request: ChatRequest
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        """The URL, headers and JSON body of the provider's wire format."""
        raise NotImplementedError

    truncation_reasons: frozenset[str] = frozenset()
    """The finish reasons that say the answer was cut at the token limit."""

    def parse_answer(self, payload: Any) -> ParsedAnswer:
        """Text, token counts and finish reason from a success body.

        May raise ``KeyError``/``TypeError``/``ValueError`` on a body of the wrong shape.
        """
        raise NotImplementedError

    def classify_error(
        self, label: str, response: httpx.Response, payload: Any, now: float
    ) -> ModelCallError:
        """The error for an HTTP 4xx/5xx answer."""
        return error_for_status(
            label,
            response.status_code,
            headers=response.headers,
            payload=payload,
            now=now,
            secrets=self._secrets,
        )

    def check_answer(self, label: str, response: httpx.Response, payload: Any, now: float) -> None:
        """Raise for an error hidden in an HTTP 200 body. Most providers never do that."""

    def headers(self) -> dict[str, str]:
        """What every request to this endpoint carries: its key, version, extra headers."""
        headers = {"content-type": "application/json", **self.endpoint.headers}
        if self.endpoint.api_key:
            headers["authorization"] = f"Bearer {self.endpoint.api_key}"
        return headers

    def models_url(self) -> str:
        """The model listing: the cheapest request that proves the endpoint and the key."""
        return f"{self.endpoint.base_url.rstrip('/')}/models"

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
        url, headers, body = self.build_request(model_name, request)
        started = time.perf_counter()
        response, content = await self._post(
            client, label, url, headers=headers, body=body, http_timeout=http_timeout
        )
        latency = time.perf_counter() - started
        now = clock()
        payload = _decode_json(content)
        del content  # the decoded payload is all that is needed from here on
        if response.status_code >= 400:
            raise self.classify_error(label, response, payload, now)
        if not isinstance(payload, dict):
            raise MalformedResponseError(
                label, "malformed response (not a JSON object)", status=response.status_code
            )
        self.check_answer(label, response, payload, now)
        try:
            answer = self.parse_answer(payload)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise MalformedResponseError(
                label,
                "malformed response (unexpected shape)",
                status=response.status_code,
                detail=shown_detail(f"{type(exc).__name__}: {exc}")[:120],
            ) from exc
        text = strip_reasoning(answer.text)
        return ChatResponse(
            model=label,
            text=text,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            latency_s=latency,
            raw_finish_reason=answer.finish_reason,
            raw_text=answer.text if text != answer.text else None,
            truncated=answer.finish_reason in self.truncation_reasons,
            cache_creation_tokens=answer.cache_creation_tokens,
            cache_creation_1h_tokens=answer.cache_creation_1h_tokens,
            cache_read_tokens=answer.cache_read_tokens,
        )

    async def _post(
        self,
        client: httpx.AsyncClient,
        label: str,
        url: str,
        *,
        headers: dict[str, str],
        body: dict[str, Any],
        http_timeout: httpx.Timeout,
    ) -> tuple[httpx.Response, bytes]:
        """The answer's head and its body, read no further than the cap allows."""
        try:
            async with client.stream(
                "POST", url, headers=headers, json=body, timeout=http_timeout
            ) as response:
                return response, await self._read_body(label, response)
        except httpx.TimeoutException as exc:
            raise RequestTimeoutError(
                label, "timed out", detail=describe_transport_error(exc, self._secrets)
            ) from exc
        except httpx.RemoteProtocolError as exc:
            # Includes a body cut short of its Content-Length: the answer is unusable, and
            # asking again is the only remedy.
            raise MalformedResponseError(
                label,
                "connection dropped mid-answer",
                detail=describe_transport_error(exc, self._secrets),
            ) from exc
        except httpx.TransportError as exc:
            raise UnreachableError(
                label, "unreachable", detail=describe_transport_error(exc, self._secrets)
            ) from exc

    async def _read_body(self, label: str, response: httpx.Response) -> bytes:
        if response.status_code >= 400:
            return await _read_at_most(response, MAX_ERROR_BODY_BYTES)  # enough to classify
        limit = self.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self._too_large(label, response.status_code)
        body = await _read_at_most(response, limit + 1)
        if len(body) > limit:
            raise self._too_large(label, response.status_code)
        return body

    def _too_large(self, label: str, status: int) -> ResponseTooLargeError:
        return ResponseTooLargeError(
            label,
            f"the answer is larger than {_describe_bytes(self.max_response_bytes)}, "
            "the most swarmd reads of one answer",
            status=status,
        )


class OpenAICompatibleProvider(HTTPProvider):
    """Chat Completions as vLLM, OpenRouter, llama.cpp and Ollama speak it."""

    max_tokens_field = "max_tokens"
    truncation_reasons = frozenset({"length"})

    def build_request(
        self, model_name: str, request: ChatRequest
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        if request.system:
            messages.insert(0, {"role": "system", "content": request.system})
        body: dict[str, Any] = {
            "model": model_name,
            "messages": messages,
            self.max_tokens_field: request.max_tokens,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return f"{self.endpoint.base_url.rstrip('/')}/chat/completions", self.headers(), body

    def check_answer(self, label: str, response: httpx.Response, payload: Any, now: float) -> None:
        # OpenRouter and some proxies report an upstream failure as HTTP 200 with an
        # ``error`` object and no choices.
        error = payload.get("error")
        if isinstance(error, dict) and not payload.get("choices"):
            code = error.get("code")
            status = code if isinstance(code, int) and 400 <= code <= 599 else 502
            raise error_for_status(
                label,
                status,
                headers=response.headers,
                payload=payload,
                now=now,
                secrets=self._secrets,
            )

    def parse_answer(self, payload: Any) -> ParsedAnswer:
        choice = payload["choices"][0]
        text = choice["message"].get("content") or ""
        if not isinstance(text, str):
            raise TypeError("message content is not a string")
        usage = payload.get("usage") or {}
        return ParsedAnswer(
            text,
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            _finish_reason(choice.get("finish_reason")),
        )


class OpenAIProvider(OpenAICompatibleProvider):
    # OpenAI deprecated ``max_tokens`` for Chat Completions and its reasoning models refuse
    # it; ``max_completion_tokens`` works for every current model.
    max_tokens_field = "max_completion_tokens"


class MiniMaxProvider(OpenAICompatibleProvider):
    """MiniMax's OpenAI-compatible endpoint, whose errors hide in ``base_resp``."""

    def classify_error(
        self, label: str, response: httpx.Response, payload: Any, now: float
    ) -> ModelCallError:
        return self._base_resp_error(label, response, payload, now) or super().classify_error(
            label, response, payload, now
        )

    def check_answer(self, label: str, response: httpx.Response, payload: Any, now: float) -> None:
        error = self._base_resp_error(label, response, payload, now)
        if error is not None:
            raise error
        super().check_answer(label, response, payload, now)

    def _base_resp_error(
        self, label: str, response: httpx.Response, payload: Any, now: float
    ) -> ModelCallError | None:
        base_resp = payload.get("base_resp") if isinstance(payload, dict) else None
        if not isinstance(base_resp, dict):
            return None
        code = base_resp.get("status_code")
        if not isinstance(code, int) or code == 0:
            return None
        message = base_resp.get("status_msg")
        return error_for_minimax(
            label,
            code,
            message if isinstance(message, str) else None,
            status=response.status_code,
            retry_after=parse_retry_after(response.headers, now=now),
            secrets=self._secrets,
        )


class AnthropicProvider(HTTPProvider):
    """The Messages API: top-level ``system``, required ``max_tokens``, content blocks.

    Its ``usage.input_tokens`` leaves out the prompt's tokens written to the prompt cache
    (``cache_creation_input_tokens``) and read from it (``cache_read_input_tokens``): the
    prompt's tokens are the three summed. ``usage.cache_creation`` may split the writes by
    how long their entries live; the one-hour ones cost more.
    """

    truncation_reasons = frozenset({"max_tokens"})

    def build_request(
        self, model_name: str, request: ChatRequest
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        # The Messages API takes only user/assistant turns; system text goes top-level.
        systems = [request.system] if request.system else []
        systems += [m.content for m in request.messages if m.role == "system"]
        messages = [
            {"role": m.role, "content": m.content} for m in request.messages if m.role != "system"
        ]
        body: dict[str, Any] = {
            "model": model_name,
            "max_tokens": request.max_tokens,
            "messages": messages,
        }
        if systems:
            body["system"] = "\n\n".join(systems)
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return f"{self.endpoint.base_url.rstrip('/')}/v1/messages", self.headers(), body

    def headers(self) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
            **self.endpoint.headers,
        }
        if self.endpoint.api_key:
            headers["x-api-key"] = self.endpoint.api_key
        return headers

    def models_url(self) -> str:
        return f"{self.endpoint.base_url.rstrip('/')}/v1/models"

    def parse_answer(self, payload: Any) -> ParsedAnswer:
        blocks = payload["content"]
        if not isinstance(blocks, list):
            raise TypeError("content is not a list of blocks")
        text = "".join(
            block["text"]
            for block in blocks
            if isinstance(block, dict) and block.get("type") == "text"
        )
        usage = payload.get("usage") or {}
        written = int(usage.get("cache_creation_input_tokens") or 0)
        read = int(usage.get("cache_read_input_tokens") or 0)
        lifetimes = usage.get("cache_creation")
        written_1h = (
            int(lifetimes.get("ephemeral_1h_input_tokens") or 0)
            if isinstance(lifetimes, dict)
            else 0
        )
        return ParsedAnswer(
            text,
            int(usage.get("input_tokens") or 0) + written + read,
            int(usage.get("output_tokens") or 0),
            _finish_reason(payload.get("stop_reason")),
            cache_creation_tokens=written,
            cache_creation_1h_tokens=written_1h,
            cache_read_tokens=read,
        )


async def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    """The body of a streamed ``response``, decoded, up to ``limit`` bytes; the rest unread.

    One network chunk may decode to more than ``limit`` (up to ~1,000 times its size for
    gzip): what is past the limit is dropped at once, so that is the most ever held.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk[: limit - size])
        size += len(chunks[-1])
        if size >= limit:
            break
    return b"".join(chunks)


def _finish_reason(value: Any) -> str | None:
    """The provider's finish reason when it is a string: it is kept and shown as it came."""
    return value if isinstance(value, str) else None


def _describe_bytes(count: int) -> str:
    return f"{count / 2**20:g} MiB" if count >= 2**20 else f"{count:,} bytes"


def _decode_json(body: bytes) -> Any:
    """The decoded body, or ``None`` when it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
