"""Pull requests on forges: GitHub, and Gitea or Forgejo, over an injected ``httpx.Client``.

- GitHub: ``POST {api}/repos/{owner}/{repo}/pulls`` with ``title``, ``head``, ``base``,
  ``body`` and ``draft``; ``Authorization: Bearer <token>``,
  ``Accept: application/vnd.github+json``, ``X-GitHub-Api-Version: 2022-11-28``.
- Gitea and Forgejo: ``POST {base}/api/v1/repos/{owner}/{repo}/pulls`` with ``title``,
  ``head``, ``base`` and ``body``; ``Authorization: token <token>``. Their API has no draft
  field: a title starting with ``WIP:`` (the first of Gitea's default
  ``WORK_IN_PROGRESS_PREFIXES``) marks the pull request as work in progress, which blocks
  merging it until the prefix is removed.

Both answer ``201`` with the pull request, whose ``html_url`` is returned. Failures become a
``ForgeRequestError`` of one sentence; the token is never in it (the forge's own words are
redacted against it, and only they are quoted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from swarmd.errors import ForgeError

GITHUB_API_URL = "https://api.github.com"
GITHUB_API_VERSION = "2022-11-28"
GITEA_WIP_PREFIX = "WIP: "
DEFAULT_FORGE_TIMEOUT_SECONDS = 30.0
DETAIL_MAX_CHARS = 300
_GITEA_WIP_PREFIXES = ("wip:", "[wip]")  # Gitea compares them case-insensitively


class ForgeRequestError(ForgeError):
    """A forge request failed; ``status`` is the HTTP status, ``None`` when none came back."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class PullRequestDraft:
    """What to ask for: merge ``head`` into ``base`` of ``owner/repo``."""

    owner: str
    repo: str
    title: str
    head: str
    """The branch with the changes (``user:branch`` for another fork on GitHub)."""
    base: str
    body: str = ""
    draft: bool = False


@dataclass(frozen=True, slots=True)
class PullRequest:
    """An opened pull request."""

    url: str
    """Its page for people (``html_url``)."""
    number: int


class Forge(Protocol):
    """A forge that can open pull requests."""

    def open_pull_request(self, draft: PullRequestDraft) -> PullRequest: ...


@dataclass(slots=True, kw_only=True)
class GitHubForge:
    """GitHub (or GitHub Enterprise at another ``api_url``)."""

    client: httpx.Client
    token: str = field(repr=False)
    api_url: str = GITHUB_API_URL
    timeout: float = DEFAULT_FORGE_TIMEOUT_SECONDS

    def open_pull_request(self, draft: PullRequestDraft) -> PullRequest:
        """Open the pull request; ``ForgeRequestError`` when GitHub refuses or fails."""
        payload = {
            "title": draft.title,
            "head": draft.head,
            "base": draft.base,
            "body": draft.body,
            "draft": draft.draft,
        }
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": GITHUB_API_VERSION,
        }
        url = f"{self.api_url.rstrip('/')}{_pulls_path(draft)}"
        return _post_pull_request(
            self.client, "GitHub", url, payload, headers, draft, self.token, self.timeout
        )


@dataclass(slots=True, kw_only=True)
class GiteaForge:
    """Gitea or Forgejo at ``base_url`` (the site's address, without ``/api/v1``)."""

    client: httpx.Client
    token: str = field(repr=False)
    base_url: str
    timeout: float = DEFAULT_FORGE_TIMEOUT_SECONDS

    def open_pull_request(self, draft: PullRequestDraft) -> PullRequest:
        """Open the pull request (a draft as a ``WIP:`` title); ``ForgeRequestError`` on failure."""
        title = draft.title
        if draft.draft and not title.lower().startswith(_GITEA_WIP_PREFIXES):
            title = GITEA_WIP_PREFIX + title
        payload = {"title": title, "head": draft.head, "base": draft.base, "body": draft.body}
        headers = {"Authorization": f"token {self.token}", "Accept": "application/json"}
        url = f"{self.base_url.rstrip('/')}/api/v1{_pulls_path(draft)}"
        return _post_pull_request(
            self.client, "Gitea", url, payload, headers, draft, self.token, self.timeout
        )


def _pulls_path(draft: PullRequestDraft) -> str:
    return f"/repos/{quote(draft.owner, safe='')}/{quote(draft.repo, safe='')}/pulls"


def _post_pull_request(
    client: httpx.Client,
    forge: str,
    url: str,
    payload: dict[str, Any],
    headers: dict[str, str],
    draft: PullRequestDraft,
    token: str,
    timeout: float,
) -> PullRequest:
    try:
        response = client.post(url, json=payload, headers=headers, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise ForgeRequestError(f"{forge} did not answer within {timeout:g} s") from exc
    except httpx.HTTPError as exc:
        reason = _redact(str(exc) or type(exc).__name__, token)
        raise ForgeRequestError(f"could not reach {forge}: {reason}") from exc
    if not response.is_success:
        raise _error_for_status(forge, response, draft, token)
    try:
        data = response.json()
        return PullRequest(url=str(data["html_url"]), number=int(data["number"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ForgeRequestError(
            f"{forge} answered {response.status_code} without a pull request's html_url",
            status=response.status_code,
        ) from exc


def _error_for_status(
    forge: str, response: httpx.Response, draft: PullRequestDraft, token: str
) -> ForgeRequestError:
    status = response.status_code
    where = f"{draft.owner}/{draft.repo}"
    detail = _detail(response, token)
    said = f": {detail}" if detail else ""
    if status == 401:
        message = f"{forge} refused the token (401): it is missing, invalid or expired"
    elif status == 403:
        message = f"{forge} forbids opening a pull request on {where} (403){said}"
    elif status == 404:
        message = f"{forge} knows no repository {where} that this token can see (404)"
    elif status == 409:
        message = f"{forge} already has a pull request from {draft.head} into {draft.base} (409)"
    elif status == 422:
        message = (
            f"{forge} rejected the pull request from {draft.head} into {draft.base} (422){said}"
        )
    elif status == 429:
        message = f"{forge} is rate limiting this token (429){said}"
    elif status >= 500:
        message = f"{forge} failed with {status}{said}"
    else:
        message = f"{forge} answered {status}{said}"
    return ForgeRequestError(message, status=status)


def _detail(response: httpx.Response, token: str) -> str:
    """The forge's own explanation: ``message`` and any ``errors[].message``, bounded."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()
    else:
        parts: list[str] = []
        if isinstance(data, dict):
            if isinstance(data.get("message"), str):
                parts.append(data["message"])
            for item in data.get("errors") or []:
                if isinstance(item, dict) and isinstance(item.get("message"), str):
                    parts.append(item["message"])
        text = "; ".join(parts)
    text = _redact(" ".join(text.split()), token)
    return text if len(text) <= DETAIL_MAX_CHARS else text[: DETAIL_MAX_CHARS - 1] + "…"


def _redact(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text
