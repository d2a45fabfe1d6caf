"""Pull requests on GitHub and Gitea, against a real loopback server that checks the wire."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from swarmd.git.forges import (
    ForgeRequestError,
    GiteaForge,
    GitHubForge,
    PullRequest,
    PullRequestDraft,
)
from tests.support.fake_forge import DRAFT, TOKEN, ForgeServer


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False) as http_client:
        yield http_client


def test_github_pull_request_sends_the_documented_fields_and_headers(
    forge_server: ForgeServer, client: httpx.Client
) -> None:
    forge = GitHubForge(client=client, token=TOKEN, api_url=forge_server.url)

    pull = forge.open_pull_request(DRAFT)

    assert pull == PullRequest("https://forge.example/octo/app/pull/12?/repos/octo/app/pulls", 12)
    (request,) = forge_server.requests
    assert request.body == {
        "title": "Landing page",
        "head": "swarmd/7/integration",
        "base": "main",
        "body": "Made by ticket 7.",
        "draft": False,
    }


def test_github_draft_is_the_draft_field(forge_server: ForgeServer, client: httpx.Client) -> None:
    forge = GitHubForge(client=client, token=TOKEN, api_url=forge_server.url)

    forge.open_pull_request(
        PullRequestDraft("octo", "app", "Landing page", "h", "main", draft=True)
    )

    assert forge_server.requests[0].body["draft"] is True
    assert forge_server.requests[0].body["title"] == "Landing page"


def test_gitea_pull_request_sends_the_documented_fields_and_token_header(
    forge_server: ForgeServer, client: httpx.Client
) -> None:
    forge = GiteaForge(client=client, token=TOKEN, base_url=forge_server.url + "/git/")

    pull = forge.open_pull_request(DRAFT)

    assert pull.number == 12
    (request,) = forge_server.requests
    assert request.path == "/git/api/v1/repos/octo/app/pulls"
    assert request.body == {
        "title": "Landing page",
        "head": "swarmd/7/integration",
        "base": "main",
        "body": "Made by ticket 7.",
    }


@pytest.mark.parametrize(
    ("title", "sent"),
    [("Landing page", "WIP: Landing page"), ("[WIP] Landing page", "[WIP] Landing page")],
)
def test_gitea_draft_is_a_wip_title(
    forge_server: ForgeServer, client: httpx.Client, title: str, sent: str
) -> None:
    forge = GiteaForge(client=client, token=TOKEN, base_url=forge_server.url)

    forge.open_pull_request(PullRequestDraft("octo", "app", title, "h", "main", draft=True))

    assert forge_server.requests[0].body["title"] == sent
    assert "draft" not in forge_server.requests[0].body


@pytest.mark.parametrize(
    ("status", "answer", "expected"),
    [
        (401, {"message": "Bad credentials"}, "GitHub refused the token (401)"),
        (403, {"message": "Resource not accessible"}, "forbids opening a pull request on octo/app"),
        (404, {"message": "Not Found"}, "knows no repository octo/app that this token can see"),
        (
            422,
            {
                "message": "Validation Failed",
                "errors": [{"message": "A pull request already exists for octo:h."}],
            },
            "rejected the pull request from swarmd/7/integration into main (422): "
            "Validation Failed; A pull request already exists for octo:h.",
        ),
        (429, {"message": "slow down"}, "rate limiting this token (429): slow down"),
        (502, "<html>Bad gateway</html>", "GitHub failed with 502: <html>Bad gateway</html>"),
    ],
)
def test_github_errors_are_one_sentence_with_the_status(
    forge_server: ForgeServer, client: httpx.Client, status: int, answer: object, expected: str
) -> None:
    forge_server.answer = (status, answer)
    forge = GitHubForge(client=client, token=TOKEN, api_url=forge_server.url)

    with pytest.raises(ForgeRequestError) as caught:
        forge.open_pull_request(DRAFT)

    assert expected in str(caught.value)
    assert caught.value.status == status
    assert TOKEN not in str(caught.value)


def test_gitea_conflict_says_the_pull_request_exists(
    forge_server: ForgeServer, client: httpx.Client
) -> None:
    forge_server.answer = (409, {"message": "pull request already exists for these targets"})
    forge = GiteaForge(client=client, token=TOKEN, base_url=forge_server.url)

    with pytest.raises(ForgeRequestError, match="already has a pull request from"):
        forge.open_pull_request(DRAFT)


def test_a_token_the_forge_echoes_back_is_redacted(
    forge_server: ForgeServer, client: httpx.Client
) -> None:
    forge_server.answer = (403, {"message": f"token {TOKEN} lacks the repo scope"})
    forge = GiteaForge(client=client, token=TOKEN, base_url=forge_server.url)

    with pytest.raises(ForgeRequestError) as caught:
        forge.open_pull_request(DRAFT)

    assert TOKEN not in str(caught.value)
    assert "token *** lacks the repo scope" in str(caught.value)


def test_an_answer_without_html_url_is_an_error(
    forge_server: ForgeServer, client: httpx.Client
) -> None:
    forge_server.answer = (201, {"number": 3})
    forge = GitHubForge(client=client, token=TOKEN, api_url=forge_server.url)

    with pytest.raises(ForgeRequestError, match="without a pull request's html_url"):
        forge.open_pull_request(DRAFT)


def test_an_unreachable_forge_is_a_forge_error(client: httpx.Client) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    closed_port = server.server_address[1]
    server.server_close()
    forge = GitHubForge(client=client, token=TOKEN, api_url=f"http://127.0.0.1:{closed_port}")

    with pytest.raises(ForgeRequestError, match="could not reach GitHub") as caught:
        forge.open_pull_request(DRAFT)
    assert caught.value.status is None
    assert TOKEN not in str(caught.value)


def test_the_token_is_not_in_the_forges_repr(client: httpx.Client) -> None:
    assert TOKEN not in repr(GitHubForge(client=client, token=TOKEN))
    assert TOKEN not in repr(GiteaForge(client=client, token=TOKEN, base_url="http://x"))
