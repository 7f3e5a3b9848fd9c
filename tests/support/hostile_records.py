"""A decision record and a release state with an attacker's string in every field it can
reach, and the decision page they render to (tests/test_decision_page_render.py and
tests/test_decision_page_browser.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from governor.ledger import ClaimEntry, DecisionRecord, Evaluation
from governor.page import render, view
from governor.state import Approval, Dispatch, EmergencyFreeze, Failure, Hold, ReleaseState

NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
SHA = "0123456789abcdef0123456789abcdef01234567"
PROD = "f" * 40
REPO_ID = 5001
GITHUB = "https://github.com"


def hostile(payload: str) -> tuple[DecisionRecord, ReleaseState]:
    """A record and a state with `payload` in every string an attacker can influence."""
    inputs = {
        "production_sha": PROD,
        "trusted_policy": f"refs/heads/{payload}",
        "decided_by": "trusted",
        "risk": "HIGH",
        "risk_unknown": False,
        "high_paths": [f"{payload}.py", f"deploy/{payload}"],
        "medium_paths": [f"docs/{payload}.md"],
        "notes": [f"note {payload}"],
        "degraded_labels": [payload],
        "superseded_by": None,
        "policy_problem": f"{payload}: unknown key",
        "own_policy_problem": None,
        f"future {payload}": [payload],
    }
    first = Evaluation(
        at=NOW - timedelta(hours=1),
        delivery=payload,
        trigger=f"verified {payload}",
        outcome="HOLD",
        reason="high_risk_no_approval",
        risk="HIGH",
        detail=f"detail {payload}",
        inputs=inputs,
    )
    latest = first.model_copy(
        update={"at": NOW, "trigger": f"approval:{payload}", "reason": payload, "risk": payload}
    )
    claim = ClaimEntry(
        guid=payload,
        event=payload,
        status="done",
        owner=payload,
        lease_until=NOW,
        updated_at=NOW,
    )
    record = DecisionRecord(
        repo_id=REPO_ID,
        repo="octo/app",
        sha=SHA,
        evaluations=(first, latest),
        total_evaluations=2,
        claims={f"workflow-run-{REPO_ID}-777-1": claim, payload: claim},
    )
    state = ReleaseState(
        repo_id=REPO_ID,
        repo=payload,
        production_sha=PROD,
        production_at=NOW - timedelta(days=1),
        dispatches=(
            Dispatch(
                sha=SHA,
                intent_id=payload,
                at=NOW - timedelta(minutes=5),
                run_id=4242,
                run_url=payload,
                workflow=payload,
                ref=payload,
            ),
        ),
        failures={
            SHA: Failure(sha=SHA, first_at=NOW, last_at=NOW, issue_number=17, conclusion=payload)
        },
        approvals={SHA: (Approval(sha=SHA, by=payload, at=NOW, via="label"),)},
        holds={SHA: Hold(sha=SHA, reason=payload, at=NOW)},
        emergency_freeze=EmergencyFreeze(reason=payload, by=payload, at=NOW),
    )
    return record, state


def rendered(record: DecisionRecord, state: ReleaseState) -> str:
    return render.render(view.build(record, state, NOW, GITHUB)).decode()
