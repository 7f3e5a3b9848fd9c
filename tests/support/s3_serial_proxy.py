"""A loopback HTTP proxy in front of moto's S3 server that makes conditional PUTs atomic.

Why it exists: real S3 decides a conditional `PutObject` (`If-Match: <etag>` or
`If-None-Match: *`) atomically: of two writers that both hold the current ETag, one
gets 200 and the other 412 (or 409 ConditionalRequestConflict while the first is in
flight). moto's server checks the header and then stores the object in two separate
steps, without a lock, in a threaded HTTP server. Two concurrent conditional PUTs can
therefore both pass the check and both answer 200: the second silently overwrites the
first, and a compare-and-swap loop built on it loses updates. That is a gap in the
emulator, not in the governor, but it makes concurrency tests against moto fail (or,
worse, pass by luck) for reasons real S3 does not have.

What it does: every request is forwarded to moto verbatim (method, path and query,
headers, body) and moto's answer is sent back verbatim. Requests that change objects
(PUT, POST, DELETE) are forwarded one at a time, holding a process-wide lock
exclusively, so moto's check-then-write of a conditional PUT runs for one of them at a
time: check and write become one atomic step, as on real S3. Reads (GET, HEAD) hold the
same lock shared: they run concurrently with each other but never in the middle of a
write, because moto stores an object's checksum and its bytes in separate steps too,
and a read between them answers a body that fails its own checksum (seen under load:
`FlexibleChecksumError ... calculated checksum: AAAAAA==`). Real S3 never shows a
half-written object, so this adds no ordering real S3 would not give.

`tests/test_gate_invariants.py::test_conditional_puts_through_the_proxy_never_lose_an_update`
shows it is needed (through moto alone, concurrent conditional increments lose updates)
and sufficient (through the proxy they all count).

Use: `with serial_proxy(moto_url) as proxy:` and point clients at `proxy.url`
(AWS_ENDPOINT_URL). `proxy.conditional_puts` counts the PUTs it serialised, so a test
can check its traffic really went through it.

It can also lose answers: `proxy.lose_answers("PUT", "/key")` forwards the next matching
request (the upstream acts on it) and then drops the connection instead of answering,
as a network failure after the write does. It relays any HTTP upstream, so it serves in
front of fake-gcs-server for that too.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final
from urllib.parse import urlsplit

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
"""Headers that belong to one connection, not to the message: never forwarded (RFC 9110 7.6.1)."""
CONDITIONAL: Final = ("if-match", "if-none-match")
UPSTREAM_TIMEOUT_S: Final = 60.0


class _ReadWriteLock:
    """Shared for readers, exclusive for writers; a waiting writer goes before new readers
    (otherwise a steady stream of reads could keep a write out for good)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._changed:
            while self._writing or self._writers_waiting:
                self._changed.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._changed:
                self._readers -= 1
                self._changed.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._changed:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._changed.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._changed:
                self._writing = False
                self._changed.notify_all()


class SerialProxy:
    """The proxy server; start it with `serial_proxy()`."""

    def __init__(self, upstream_url: str) -> None:
        upstream = urlsplit(upstream_url)
        if upstream.scheme != "http" or upstream.hostname is None or upstream.port is None:
            raise ValueError(f"upstream must be http://host:port, got {upstream_url!r}")
        self.upstream_host: str = upstream.hostname
        self.upstream_port: int = upstream.port
        self.objects = _ReadWriteLock()
        self._count_lock = threading.Lock()
        self.conditional_puts = 0
        self.requests = 0
        self._losses: list[tuple[str, str]] = []
        self.lost = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def count(self, *, conditional_put: bool) -> None:
        with self._count_lock:
            self.requests += 1
            if conditional_put:
                self.conditional_puts += 1

    def lose_answers(self, method: str, path_contains: str, *, times: int = 1) -> None:
        """Forward the next `times` requests of `method` whose target contains
        `path_contains`, then drop the connection instead of answering."""
        with self._count_lock:
            self._losses.extend([(method, path_contains)] * times)

    def take_loss(self, method: str, target: str) -> bool:
        with self._count_lock:
            for i, (lost_method, fragment) in enumerate(self._losses):
                if lost_method == method and fragment in target:
                    del self._losses[i]
                    self.lost += 1
                    return True
            return False

    def forward(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """Send one request to moto on a fresh connection and return its whole answer."""
        connection = http.client.HTTPConnection(
            self.upstream_host, self.upstream_port, timeout=UPSTREAM_TIMEOUT_S
        )
        try:
            connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)
            connection.endheaders(body)
            response = connection.getresponse()
            data = response.read()
            return response.status, response.reason, response.getheaders(), data
        finally:
            connection.close()


def _handler_for(proxy: SerialProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 so that botocore's `Expect: 100-continue` is answered at once (the
        # base class does it) and connections are kept alive as botocore expects.
        protocol_version = "HTTP/1.1"
        # The status line and headers go out in one write and the body in another: with
        # Nagle's algorithm on, the body waits for the client's delayed ACK (~40 ms on
        # Linux), every request. That made each update through the proxy 3-4 times slower.
        disable_nagle_algorithm = True

        def _relay(self) -> None:
            body = self._read_body()
            headers = [
                (name, value)
                for name, value in self.headers.items()
                if name.lower() not in HOP_BY_HOP and name.lower() != "expect"
            ]
            if body is not None and self.headers.get("Transfer-Encoding"):
                # A chunked body was read whole above: moto gets it with its length.
                headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
                headers.append(("Content-Length", str(len(body))))
            conditional = self.command == "PUT" and any(
                self.headers.get(name) is not None for name in CONDITIONAL
            )
            proxy.count(conditional_put=conditional)
            reads = self.command in ("GET", "HEAD")
            with proxy.objects.reading() if reads else proxy.objects.writing():
                answer = proxy.forward(self.command, self.path, headers, body)
            status, reason, response_headers, data = answer
            if proxy.take_loss(self.command, self.path):
                self.close_connection = True  # the upstream acted; its answer is lost
                return
            self.send_response_only(status, reason)
            for name, value in response_headers:
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            if self.command == "HEAD":
                length = next(
                    (v for n, v in response_headers if n.lower() == "content-length"), "0"
                )
                self.send_header("Content-Length", length)
                self.end_headers()
                return
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _read_body(self) -> bytes | None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailer fields end with an empty line
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = self.headers.get("Content-Length")
            return self.rfile.read(int(length)) if length else None

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: pytest shows failures, not every request

    return Handler


@contextmanager
def serial_proxy(upstream_url: str) -> Iterator[SerialProxy]:
    """Serve a SerialProxy in front of `upstream_url` for the duration of the block."""
    proxy = SerialProxy(upstream_url)
    thread = threading.Thread(target=proxy.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()
        thread.join(timeout=10)
