"""App JWTs, the token cache, and typed events from GitHub's real example payloads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from governor.events import (
    Delivery,
    Ignored,
    IssueCommentCreated,
    PullRequestLabeled,
    WorkflowRunCompleted,
    classify,
)
from governor.github.auth import InstallationToken, TokenCache, app_jwt

from tests.support.keys import rsa_key_pair

WEBHOOKS = Path(__file__).parent / "fixtures" / "github" / "webhooks"
NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)


def test_app_jwt_has_the_claims_github_requires() -> None:
    private, public = rsa_key_pair()
    token = app_jwt("12345", private, NOW)
    claims = jwt.decode(
        token, public, algorithms=["RS256"], options={"verify_exp": False, "verify_iat": False}
    )
    assert claims["iss"] == "12345" and isinstance(claims["iss"], str)
    assert claims["iat"] == int(NOW.timestamp()) - 60
    assert claims["exp"] - claims["iat"] <= 600
    assert claims["exp"] > int(NOW.timestamp())
    assert jwt.get_unverified_header(token)["alg"] == "RS256"


def test_installation_tokens_are_reused_until_shortly_before_expiry() -> None:
    clock = [NOW]
    fetched: list[int] = []

    def fetch(installation_id: int) -> InstallationToken:
        fetched.append(installation_id)
        return InstallationToken(f"tok-{len(fetched)}", clock[0] + timedelta(hours=1))

    cache = TokenCache(fetch, lambda: clock[0])
    assert cache.token(1) == "tok-1"
    clock[0] = NOW + timedelta(minutes=54)
    assert cache.token(1) == "tok-1"
    assert cache.token(2) == "tok-2"  # per installation
    clock[0] = NOW + timedelta(minutes=55, seconds=1)
    assert cache.token(1) == "tok-3"
    assert fetched == [1, 2, 1]


def deliveries() -> list[tuple[str, Delivery]]:
    found = []
    for path in sorted(WEBHOOKS.glob("*.json")):
        event = path.name.split(".")[0]
        found.append((path.name, Delivery("guid", event, json.loads(path.read_text()))))
    return found


@pytest.mark.parametrize(("name", "delivery"), deliveries(), ids=[n for n, _ in deliveries()])
def test_every_real_example_classifies_without_raising(name: str, delivery: Delivery) -> None:
    result = classify(delivery)
    if isinstance(result, Ignored):
        assert result.why
    else:
        assert isinstance(result, WorkflowRunCompleted | PullRequestLabeled | IssueCommentCreated)


def test_odd_payloads_get_a_reason() -> None:
    completed = json.loads((WEBHOOKS / "workflow_run.completed.1.json").read_text())
    assert completed["workflow_run"]["name"] == ""  # GitHub's example really has an empty name
    result = classify(Delivery("g", "workflow_run", completed))
    assert isinstance(result, Ignored) and "installation" in result.why

    with_installation = {**completed, "installation": {"id": 1}}
    typed = classify(Delivery("g", "workflow_run", with_installation))
    assert isinstance(typed, WorkflowRunCompleted) and typed.workflow_run.name == ""

    broken = {
        **with_installation,
        "workflow_run": {**completed["workflow_run"], "head_sha": "nope"},
    }
    odd = classify(Delivery("g", "workflow_run", broken))
    assert isinstance(odd, Ignored) and "workflow_run.head_sha" in odd.why

    assert isinstance(classify(Delivery("g", "workflow_run", {"action": "completed"})), Ignored)
    assert isinstance(classify(Delivery("g", "workflow_run", {"action": 5})), Ignored)
    assert isinstance(classify(Delivery("g", "deployment", {})), Ignored)
