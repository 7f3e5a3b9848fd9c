"""The HTTP functions served by the functions-framework emulator, exercised over loopback."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from governor.events import signature_for
from governor.store import open_store

from tests.support.functions_server import serve_function

FIXTURES = Path(__file__).parent / "fixtures" / "github" / "webhooks"
SECRET = "test-secret-" + uuid.uuid4().hex  # made per run; never a real secret


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def webhook_url(state_dir: Path) -> Iterator[str]:
    env = {"GOVERNOR_STORE_URL": state_dir.as_uri(), "GOVERNOR_WEBHOOK_SECRET": SECRET}
    with serve_function("github_webhook", env) as server:
        yield server.url


def send(
    url: str,
    body: bytes,
    *,
    event: str = "ping",
    secret: str | None = SECRET,
    sign_body: bytes | None = None,
) -> httpx.Response:
    headers = {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": str(uuid.uuid4()),
    }
    if secret is not None:
        headers["x-hub-signature-256"] = signature_for(secret.encode(), sign_body or body)
    return httpx.post(url, content=body, headers=headers, timeout=30)


def ping_body() -> bytes:
    return (FIXTURES / "ping.event.0.json").read_bytes()


def test_signed_ping_is_answered(webhook_url: str) -> None:
    response = send(webhook_url, ping_body())
    assert response.status_code == 200
    assert response.json()["result"] == "pong"


def test_signed_event_without_a_handler_is_ignored_with_a_reason(webhook_url: str) -> None:
    body = (FIXTURES / "push.event.0.json").read_bytes()
    response = send(webhook_url, body, event="push")
    assert response.status_code == 200
    assert response.json()["result"] == "ignored"
    assert "push" in response.json()["why"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unsigned", 401),
        ("wrong secret", 401),
        ("truncated body", 401),
        ("not json", 400),
        ("json but not an object", 400),
        ("no event header", 400),
        ("30 MB body", 413),
    ],
)
def test_bad_deliveries_are_refused_and_change_nothing(
    webhook_url: str, state_dir: Path, case: str, expected: int
) -> None:
    body = ping_body()
    if case == "unsigned":
        response = send(webhook_url, body, secret=None)
    elif case == "wrong secret":
        response = send(webhook_url, body, secret="not-the-secret")
    elif case == "truncated body":
        response = send(webhook_url, body[: len(body) // 2], sign_body=body)
    elif case == "not json":
        response = send(webhook_url, b"{this is not json")
    elif case == "json but not an object":
        response = send(webhook_url, b"[1, 2, 3]")
    elif case == "no event header":
        headers = {
            "x-github-delivery": str(uuid.uuid4()),
            "x-hub-signature-256": signature_for(SECRET.encode(), body),
        }
        response = httpx.post(webhook_url, content=body, headers=headers, timeout=30)
    else:
        big = b'{"pad": "' + b"x" * (30 * 1024 * 1024) + b'"}'
        response = send(webhook_url, big)

    assert response.status_code == expected, response.text
    assert response.json()["error"], "the answer says what is wrong"
    assert open_store(state_dir.as_uri()).list() == []


def test_get_is_not_a_delivery(webhook_url: str) -> None:
    response = httpx.get(webhook_url, timeout=30)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_the_secret_never_reaches_the_logs(state_dir: Path) -> None:
    env = {"GOVERNOR_STORE_URL": state_dir.as_uri(), "GOVERNOR_WEBHOOK_SECRET": SECRET}
    with serve_function("github_webhook", env) as server:
        send(server.url, ping_body())
        send(server.url, ping_body(), secret="wrong")
    log = server.log
    assert "rejected delivery" in log
    assert SECRET not in log
    for line in log.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            assert {"severity", "message"} <= entry.keys()


def test_health_answers_ok_and_names_no_store(state_dir: Path) -> None:
    env = {"GOVERNOR_STORE_URL": state_dir.as_uri(), "GOVERNOR_WEBHOOK_SECRET": SECRET}
    with serve_function("health", env) as server:
        response = httpx.get(server.url, timeout=30)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert str(state_dir) not in response.text  # unauthenticated: no bucket or path


def test_an_unusable_store_is_a_503_that_reveals_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store should be")
    env = {"GOVERNOR_STORE_URL": blocker.as_uri(), "GOVERNOR_WEBHOOK_SECRET": SECRET}
    with serve_function("health", env) as server:
        response = httpx.get(server.url, timeout=30)
    assert response.status_code == 503
    assert "not-a-directory" not in response.text and str(tmp_path) not in response.text
    assert "not-a-directory" in server.log  # the operator finds the details in the log


def test_missing_configuration_is_a_clear_503_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOVERNOR_STORE_URL", raising=False)
    monkeypatch.delenv("GOVERNOR_WEBHOOK_SECRET", raising=False)
    with serve_function("health", {}) as health_server:
        health = httpx.get(health_server.url, timeout=30)
    with serve_function("github_webhook", {}) as webhook_server:
        webhook = send(webhook_server.url, ping_body())
    for response, server in ((health, health_server), (webhook, webhook_server)):
        assert response.status_code == 503
        assert "not configured" in response.json()["error"]
        assert "GOVERNOR_" not in response.text  # details are for the log, not the caller
        assert "GOVERNOR_STORE_URL" in server.log and "GOVERNOR_WEBHOOK_SECRET" in server.log
        assert int(response.headers["retry-after"]) > 0
