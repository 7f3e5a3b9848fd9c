"""Edges of the trust rules that need no server: secrets, signatures, GUIDs, payload
identity, removed policy keys, and documents written by the previous schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from governor.events import (
    Delivery,
    DeploymentProtectionRuleRequested,
    InvalidDelivery,
    WorkflowRunCompleted,
    classify,
    identity,
    parse_delivery,
    signature_for,
)
from governor.ledger import DecisionRecord, DeliveryRecord, Ledger
from governor.policy import Policy, PolicyProblem, parse_policy
from governor.settings import ConfigError, load_settings
from governor.state import SCHEMA_VERSION, ReleaseState, deploy_succeeded
from governor.store import ABSENT, open_store

WEBHOOKS = Path(__file__).parent / "fixtures" / "github" / "webhooks"
STORED_V1 = Path(__file__).parent / "fixtures" / "stored" / "v1"
SECRET = b"a-secret-of-32-characters-length"
OLD_SECRET = b"the-previous-secret-being-rotated"
GUID = "72d3162e-cc78-11e3-81ab-4c9367dc0958"


def headers(body: bytes, secret: bytes = SECRET, **changes: str) -> dict[str, str]:
    values = {
        "x-hub-signature-256": signature_for(secret, body),
        "x-github-delivery": GUID,
        "x-github-event": "ping",
    }
    values.update(changes)
    return values


# -- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["GOVERNOR_WEBHOOK_SECRET", "GOVERNOR_WEBHOOK_SECRET_PREVIOUS", "GOVERNOR_LINK_SECRET"]
)
def test_a_secret_shorter_than_16_characters_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("GOVERNOR_STORE_URL", "file:///tmp/x")
    monkeypatch.setenv("GOVERNOR_WEBHOOK_SECRET", SECRET.decode())
    monkeypatch.setenv(name, "x" * 15)
    with pytest.raises(ConfigError, match=f"{name}: .*shorter than 16 characters"):
        load_settings()
    monkeypatch.setenv(name, "x" * 16)
    assert load_settings()


def test_an_empty_webhook_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVERNOR_STORE_URL", "file:///tmp/x")
    monkeypatch.setenv("GOVERNOR_WEBHOOK_SECRET", "")
    with pytest.raises(ConfigError, match="GOVERNOR_WEBHOOK_SECRET"):
        load_settings()


# -- signatures and headers -------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "sha256=ünïcödé",
        "sha256=" + "G" * 64,
        "sha256=" + "a" * 63,
        "sha1=" + "a" * 40,
        "sha256=" + "A" * 64,
        " sha256=" + "a" * 64,
        "\x00",
    ],
)
def test_a_malformed_signature_header_is_401(header: str) -> None:
    body = b"{}"
    with pytest.raises(InvalidDelivery) as info:
        parse_delivery(headers(body, **{"x-hub-signature-256": header}), body, [SECRET])
    assert info.value.status == 401


def test_the_previous_secret_is_accepted_while_it_is_rotated_out() -> None:
    body = b'{"zen": "rotate"}'
    old = headers(body, OLD_SECRET)
    assert parse_delivery(old, body, [SECRET, OLD_SECRET]).payload == {"zen": "rotate"}
    with pytest.raises(InvalidDelivery) as info:
        parse_delivery(old, body, [SECRET])  # once removed, the old secret is refused
    assert info.value.status == 401


@pytest.mark.parametrize("guid", ["../../x", "a/b", "x" * 101, "-leading-dash", "ü"])
def test_a_malformed_delivery_guid_is_400_before_anything_else(guid: str) -> None:
    body = b"{}"
    with pytest.raises(InvalidDelivery) as info:
        parse_delivery(headers(body, **{"x-github-delivery": guid}), body, [SECRET])
    assert info.value.status == 400


# -- payload identity -------------------------------------------------------------------


def _run_event(**run_changes: object) -> WorkflowRunCompleted:
    payload = json.loads((WEBHOOKS / "workflow_run.completed.1.json").read_text())
    payload["installation"] = {"id": 1}
    payload["workflow_run"].update(run_changes)
    event = classify(Delivery(GUID, "workflow_run", payload))
    assert isinstance(event, WorkflowRunCompleted), event
    return event


def test_identity_is_the_run_and_attempt_not_the_guid() -> None:
    first, same = _run_event(id=11, run_attempt=1), _run_event(id=11, run_attempt=1)
    assert identity(first) == identity(same)
    assert identity(_run_event(id=11, run_attempt=2)) != identity(first)
    assert identity(_run_event(id=12, run_attempt=1)) != identity(first)


def _protection(callback: str) -> object:
    payload = {
        "action": "requested",
        "environment": "production",
        "event": "workflow_dispatch",
        "deployment_callback_url": callback,
        "deployment": {"id": 9, "sha": "a" * 40, "ref": "main"},
        "repository": {"id": 5, "full_name": "octo/app", "default_branch": "main"},
        "installation": {"id": 1},
        "sender": {"login": "someone"},
    }
    return classify(Delivery(GUID, "deployment_protection_rule", payload))


def test_a_protection_request_names_its_run_only_through_this_repositorys_callback() -> None:
    ours = _protection(
        "https://api.github.com/repos/octo/app/actions/runs/77/deployment_protection_rule"
    )
    assert isinstance(ours, DeploymentProtectionRuleRequested) and ours.run_id() == 77
    for elsewhere in (
        "https://api.github.com/repos/other/app/actions/runs/77/deployment_protection_rule",
        "https://api.github.com/repos/octo/app/actions/runs/77/approve",
        "https://api.github.com/repos/octo/app/actions/runs/x/deployment_protection_rule",
    ):
        assert not isinstance(_protection(elsewhere), DeploymentProtectionRuleRequested)


# -- the policy file --------------------------------------------------------------------


def test_the_removed_default_branch_key_says_why() -> None:
    problem = parse_policy("deploy_workflow: deploy.yml\ndefault_branch: release\n")
    assert isinstance(problem, PolicyProblem) and problem.key == "default_branch"
    assert "removed" in problem.message and "default branch" in problem.message
    other = parse_policy("deploy_workflow: deploy.yml\nmystery: 1\n")
    assert isinstance(other, PolicyProblem) and other.message.startswith("unknown key")


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("release", "release"),
        ("refs/heads/release", "release"),
        ("refs/tags/v1", None),
        ("a..b", None),
    ],
)
def test_deploy_ref_is_a_branch(ref: str, expected: str | None) -> None:
    parsed = parse_policy(f"deploy_workflow: deploy.yml\ndeploy_ref: {ref}\n")
    if expected is None:
        assert isinstance(parsed, PolicyProblem) and parsed.key == "deploy_ref"
    else:
        assert isinstance(parsed, Policy) and parsed.deploy_ref == expected


def test_the_first_deploy_needs_no_approval_by_default() -> None:
    parsed = parse_policy("deploy_workflow: deploy.yml\n")
    assert isinstance(parsed, Policy) and parsed.require_approval_for_first_deploy is False


# -- stored documents from the previous schema -----------------------------------------


def test_documents_written_by_schema_1_are_read_and_migrated(tmp_path: Path) -> None:
    store = open_store((tmp_path / "store").as_uri())
    for path in STORED_V1.rglob("*.json"):
        store.put(
            path.relative_to(STORED_V1).as_posix(), path.read_bytes(), if_generation_match=ABSENT
        )
    ledger = Ledger(store)

    state = ledger.read_state(4242, "octo/shop")
    assert state.schema_version == SCHEMA_VERSION == 2
    assert state.production_sha == "a" * 40
    assert [d.sha[0] for d in state.dispatches] == ["b", "c"]
    assert state.dispatches[0].run_id == 7001 and state.dispatches[0].workflow is None
    assert state.failures["b" * 40].issue_number == 12
    assert state.approvals_for("c" * 40)[0].by == "maintainer"
    assert state.emergency_freeze is not None and state.emergency_freeze.reason == "incident 42"

    now = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
    after = ledger.transition(4242, "octo/shop", lambda s: deploy_succeeded(s, "c" * 40, now))
    raw = json.loads(store.get("repos/4242/state.json").data)  # type: ignore[union-attr]
    assert raw["schema_version"] == 2 and after.production_previous_sha == "a" * 40
    assert ReleaseState.model_validate(raw) == after

    record = ledger.read_decision(4242, "c" * 40)
    assert isinstance(record, DecisionRecord) and record.latest is not None
    assert record.latest.reason == "high_risk_no_approval"
    delivery = store.get(f"deliveries/{GUID}.json")
    assert delivery is not None
    assert DeliveryRecord.model_validate_json(delivery.data).status == "done"
