"""A webhook endpoint on 127.0.0.1 that records what it receives and answers as told.

For tests of the fake GitHub's deliveries (`FakeGitHub.deliver`, redeliveries): each
request is recorded (headers, exact body bytes) and answered with the next queued
`Reply`, or the default one. A reply can wait for an event before answering, so a test
controls exactly when (or whether) the webhook answers, without sleeping.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]  # names as sent
    body: bytes

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: {"result": "ok"})
    wait_for: threading.Event | None = None
    """Answer only once this is set (or the receiver stops)."""
    delay_s: float = 0.0
    """Answer this late (waits on the receiver's stop event, so stopping cuts it short)."""


class WebhookReceiver:
    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self.received: list[Received] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="webhook-receiver",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/webhook"

    def reply(self, *replies: Reply) -> None:
        """Answer the next requests with these, in order (then with `default`)."""
        with self._lock:
            self._replies.extend(replies)

    def wait_for_requests(self, count: int, timeout_s: float = 10.0) -> list[Received]:
        """Block until `count` requests have arrived (TimeoutError otherwise)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.received) >= count, timeout_s):
                raise TimeoutError(f"{len(self.received)} of {count} requests arrived")
            return list(self.received)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._arrived:
            self.received.append(Received(dict(handler.headers.items()), body))
            reply = self._replies.popleft() if self._replies else self.default
            self._arrived.notify_all()
        if reply.wait_for is not None:
            while not reply.wait_for.wait(0.05) and not self._stopping.is_set():
                pass
        if reply.delay_s > 0:
            self._stopping.wait(reply.delay_s)
        data = json.dumps(reply.body).encode()
        try:
            handler.send_response(reply.status)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the sender gave up waiting
            handler.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        cast(_Server, self.server).receiver._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass
