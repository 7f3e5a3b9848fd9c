"""Builders for decision inputs, so each test states only what matters to it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from governor.decision import DecisionInputs
from governor.policy import Policy, parse_policy
from governor.risk import Risk, RiskAssessment
from governor.state import Approval, Dispatch, EmergencyFreeze, Failure, ReleaseState

NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)  # a Tuesday afternoon
SHA = "a" * 40
OTHER_SHA = "b" * 40
PROD_SHA = "c" * 40


def policy(yaml_text: str = "") -> Policy:
    parsed = parse_policy("deploy_workflow: deploy.yml\n" + yaml_text)
    assert isinstance(parsed, Policy), parsed
    return parsed


def risk(level: Risk = Risk.LOW, *, unknown: bool = False) -> RiskAssessment:
    return RiskAssessment(level=level, unknown=unknown)


def approval(sha: str = SHA, by: str = "maintainer", at: datetime = NOW) -> Approval:
    return Approval(sha=sha, by=by, at=at, via="label")


def state(
    *,
    production: str | None = PROD_SHA,
    dispatched_ago: tuple[timedelta, ...] = (),
    failed_ago: timedelta | None = None,
    emergency: bool = False,
    now: datetime = NOW,
) -> ReleaseState:
    return ReleaseState(
        repo_id=1,
        repo="octo/app",
        production_sha=production,
        dispatches=tuple(
            Dispatch(sha=f"{i:040x}", intent_id=f"i{i}", at=now - ago)
            for i, ago in enumerate(dispatched_ago)
        ),
        failures={}
        if failed_ago is None
        else {SHA: Failure(sha=SHA, first_at=now - failed_ago, last_at=now - failed_ago)},
        emergency_freeze=EmergencyFreeze(reason="incident", by="oncall", at=now)
        if emergency
        else None,
    )


def inputs(**overrides: Any) -> DecisionInputs:
    values: dict[str, Any] = {
        "sha": SHA,
        "policy": policy(),
        "state": state(),
        "risk": risk(),
        "degraded": False,
        "approvals": (),
        "now": NOW,
        "superseded_by": None,
    }
    values.update(overrides)
    return DecisionInputs(**values)
