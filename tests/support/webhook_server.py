"""A webhook receiver on loopback: records every request, answers as a test scripts it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG = -1
"""A scripted answer: read the request, then answer nothing until the server closes."""


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookServer:
    """``answers`` are status codes (or ``HANG``) used in order; the last one repeats."""

    answers: list[int] = field(default_factory=lambda: [200])
    received: list[Received] = field(default_factory=list)
    closing: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_answer(self) -> int:
        with self.lock:
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def record(self, received: Received) -> None:
        with self.lock:
            self.received.append(received)


def handler_for(server: WebhookServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            server.record(Received(dict(self.headers.items()), body))
            answer = server.next_answer()
            if answer == HANG:
                server.closing.wait(60)
                return
            self.send_response(answer)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def webhook_server(*answers: int, path: str = "/hooks/T0KEN-in-path") -> Iterator[WebhookServer]:
    """A receiver on 127.0.0.1 at a free port, for the block."""
    server = WebhookServer(answers=list(answers) or [200])
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(server))
    httpd.daemon_threads = True
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}{path}"
    thread = threading.Thread(target=httpd.serve_forever, name="webhook-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.closing.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
