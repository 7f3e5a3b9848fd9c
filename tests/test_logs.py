"""Log lines for Cloud Logging: the request's trace, from headers anyone can send."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import flask
import httpx
import pytest
from governor.events import signature_for
from governor.logs import (
    JsonFormatter,
    Trace,
    bind_request_trace,
    parse_trace,
    reset_request_trace,
    trace_fields,
    with_request_trace,
)

from tests.support.functions_server import serve_function

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_HEX = "00f067aa0ba902b7"
TRACE_KEY = "logging.googleapis.com/trace"
SPAN_KEY = "logging.googleapis.com/spanId"


@pytest.fixture(autouse=True)
def project(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("GCP_PROJECT", raising=False)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "my-project")
    return "my-project"


@pytest.fixture
def bound() -> Iterator[None]:
    token = bind_request_trace({"X-Cloud-Trace-Context": f"{TRACE}/1;o=1"})
    try:
        yield
    finally:
        reset_request_trace(token)


def line(message: str = "hello") -> dict[str, object]:
    record = logging.LogRecord("governor.test", logging.INFO, __file__, 1, message, None, None)
    entry: dict[str, object] = json.loads(JsonFormatter().format(record))
    return entry


def test_cloud_trace_header() -> None:
    assert parse_trace({"X-Cloud-Trace-Context": f"{TRACE}/{int(SPAN_HEX, 16)};o=1"}) == Trace(
        TRACE, SPAN_HEX, True
    )
    assert parse_trace({"x-cloud-trace-context": TRACE}) == Trace(TRACE, None, None)
    assert parse_trace({"X-Cloud-Trace-Context": f"{TRACE}/7;o=0"}) == Trace(
        TRACE, "0000000000000007", False
    )


def test_traceparent_header() -> None:
    assert parse_trace({"traceparent": f"00-{TRACE}-{SPAN_HEX}-01"}) == Trace(TRACE, SPAN_HEX, True)
    assert parse_trace({"Traceparent": f"00-{TRACE}-{SPAN_HEX}-00"}) == Trace(
        TRACE, SPAN_HEX, False
    )


def test_cloud_trace_header_wins_over_traceparent() -> None:
    other = "0af7651916cd43dd8448eb211c80319c"
    headers = {"X-Cloud-Trace-Context": f"{TRACE}/1", "traceparent": f"00-{other}-{SPAN_HEX}-01"}
    trace = parse_trace(headers)
    assert trace is not None and trace.trace_id == TRACE
    # an invalid Cloud header falls back to a valid traceparent
    headers["X-Cloud-Trace-Context"] = "nonsense"
    trace = parse_trace(headers)
    assert trace is not None and trace.trace_id == other


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Cloud-Trace-Context": TRACE[:-1]},  # 31 digits
        {"X-Cloud-Trace-Context": TRACE + "0"},  # 33 digits
        {"X-Cloud-Trace-Context": TRACE.upper()},
        {"X-Cloud-Trace-Context": "0" * 32},
        {"X-Cloud-Trace-Context": f'{TRACE}/1;o=1\n{{"severity": "EMERGENCY"}}'},
        {"X-Cloud-Trace-Context": f"{TRACE}/abc;o=1"},
        {"X-Cloud-Trace-Context": f"{TRACE}/1;o=2"},
        {"X-Cloud-Trace-Context": f"{TRACE}/1" + " " * 300},
        {"X-Cloud-Trace-Context": f"projects/x/traces/{TRACE}"},
        {"traceparent": f"01-{TRACE}-{SPAN_HEX}-01"},  # unknown version
        {"traceparent": f"00-{'0' * 32}-{SPAN_HEX}-01"},
        {"traceparent": f"00-{TRACE}-{'0' * 16}-01"},
        {"traceparent": f"00-{TRACE}-{SPAN_HEX[:-1]}-01"},
        {"traceparent": f"00-{TRACE}-{SPAN_HEX}-1"},
        {"traceparent": f"00-{TRACE}-{SPAN_HEX}-01-extra"},
        {"traceparent": f"00-{TRACE.upper()}-{SPAN_HEX}-01"},
        {},
    ],
)
def test_invalid_headers_are_ignored(headers: dict[str, str]) -> None:
    assert parse_trace(headers) is None


def test_a_span_beyond_64_bits_is_dropped_but_the_trace_kept() -> None:
    assert parse_trace({"X-Cloud-Trace-Context": f"{TRACE}/{2**64}"}) == Trace(TRACE, None, None)
    assert parse_trace({"X-Cloud-Trace-Context": f"{TRACE}/0"}) == Trace(TRACE, None, None)


@pytest.mark.usefixtures("bound")
def test_lines_carry_the_trace_while_bound() -> None:
    entry = line()
    assert entry[TRACE_KEY] == f"projects/my-project/traces/{TRACE}"
    assert entry[SPAN_KEY] == "0000000000000001"
    assert entry["logging.googleapis.com/trace_sampled"] is True
    assert entry["severity"] == "INFO" and entry["message"] == "hello"


def test_no_trace_after_reset() -> None:
    token = bind_request_trace({"X-Cloud-Trace-Context": TRACE})
    assert TRACE_KEY in line()
    reset_request_trace(token)
    assert TRACE_KEY not in line()
    assert trace_fields() == {}


@pytest.mark.usefixtures("bound")
def test_no_trace_without_a_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    assert TRACE_KEY not in line()
    monkeypatch.setenv("GCP_PROJECT", "fallback-project")
    assert line()[TRACE_KEY] == f"projects/fallback-project/traces/{TRACE}"
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "Not A/Project")
    monkeypatch.delenv("GCP_PROJECT")
    assert TRACE_KEY not in line()


def test_the_decorator_binds_per_request_and_resets() -> None:
    seen: list[dict[str, object]] = []

    @with_request_trace
    def handler(request: flask.Request) -> str:
        seen.append(trace_fields())
        return "ok"

    app = flask.Flask(__name__)
    with app.test_request_context(headers={"traceparent": f"00-{TRACE}-{SPAN_HEX}-01"}):
        assert handler(flask.request) == "ok"
    with app.test_request_context():
        handler(flask.request)
    assert seen[0][SPAN_KEY] == SPAN_HEX
    assert seen[1] == {}
    assert trace_fields() == {}


def test_the_webhook_logs_under_the_request_trace(tmp_path: Path) -> None:
    secret = "logs-test-" + uuid.uuid4().hex
    env = {
        "GOVERNOR_STORE_URL": tmp_path.as_uri(),
        "GOVERNOR_WEBHOOK_SECRET": secret,
        "GOOGLE_CLOUD_PROJECT": "my-project",
    }
    body = b'{"zen": "Keep it logically awesome."}'
    with serve_function("github_webhook", env) as server:
        response = httpx.post(
            server.url,
            content=body,
            headers={
                "content-type": "application/json",
                "x-github-event": "ping",
                "x-github-delivery": str(uuid.uuid4()),
                "x-hub-signature-256": signature_for(secret.encode(), body),
                "x-cloud-trace-context": f"{TRACE}/1;o=1",
            },
            timeout=30,
        )
        assert response.status_code == 200
    lines = [json.loads(x) for x in server.log.splitlines() if x.startswith("{")]
    ping = [x for x in lines if x.get("message") == "ping received"]
    assert ping and ping[0][TRACE_KEY] == f"projects/my-project/traces/{TRACE}"
