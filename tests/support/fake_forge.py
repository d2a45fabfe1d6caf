"""A loopback forge: GitHub's and Gitea's pull-request endpoints, checking each request
against the fields and headers their documentation gives, recording it, and answering."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from swarmd.git.forges import PullRequestDraft

TOKEN = "ghp_test_9d3b7f1a2c4e6a8b0d"
DRAFT = PullRequestDraft(
    owner="octo",
    repo="app",
    title="Landing page",
    head="swarmd/7/integration",
    base="main",
    body="Made by ticket 7.",
)

# The request fields each API documents: GitHub's "Create a pull request" and Gitea's
# CreatePullRequestOption (which has no draft field).
GITHUB_FIELDS = {
    "title",
    "head",
    "head_repo",
    "base",
    "body",
    "maintainer_can_modify",
    "draft",
    "issue",
}
GITEA_FIELDS = {
    "assignee",
    "assignees",
    "base",
    "body",
    "due_date",
    "head",
    "labels",
    "milestone",
    "title",
}


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class ForgeServer:
    """A loopback HTTP server: checks each pull-request request, records it, answers."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.answer: tuple[int, object] | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                body = json.loads(raw)
                server.requests.append(Recorded(self.path, dict(self.headers.items()), body))
                status, answer = server.respond(self.path, self.headers, body)
                data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        # A short poll interval: shutdown() waits for the serving loop to look again.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def respond(self, path: str, headers: Any, body: dict[str, Any]) -> tuple[int, object]:
        problem = _wire_problem(path, headers, body)
        if problem:
            return 400, {"message": problem}
        if self.answer is not None:
            return self.answer
        return 201, {"number": 12, "html_url": f"https://forge.example/octo/app/pull/12?{path}"}


def _wire_problem(path: str, headers: Any, body: dict[str, Any]) -> str | None:
    if path.endswith("/api/v1/repos/octo/app/pulls"):
        if headers.get("Authorization") != f"token {TOKEN}":
            return "Gitea expects 'Authorization: token <token>'"
        fields = GITEA_FIELDS
    elif path == "/repos/octo/app/pulls":
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return "GitHub expects 'Authorization: Bearer <token>'"
        if headers.get("Accept") != "application/vnd.github+json":
            return "GitHub expects Accept: application/vnd.github+json"
        if headers.get("X-GitHub-Api-Version") != "2022-11-28":
            return "GitHub expects X-GitHub-Api-Version: 2022-11-28"
        fields = GITHUB_FIELDS
    else:
        return f"no route {path}"
    if headers.get("Content-Type") != "application/json":
        return "the body must be JSON"
    if set(body) - fields:
        return f"undocumented fields {sorted(set(body) - fields)}"
    if not all(isinstance(body.get(key), str) and body[key] for key in ("title", "head", "base")):
        return "title, head and base are required"
    return None
