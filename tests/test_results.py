"""The typed values flows and commands return (msgspec structs): what equality compares,
and the JSON they answer with, keys in field order."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from governor.commands.jsonify import to_json as command_json
from governor.commands.status import Freeze
from governor.decision import Outcome
from governor.flows.reconcile import ReconcileSummary
from governor.flows.results import Evaluated, Ignored, Kind, to_json
from governor.ledger import Evaluation

SHA = "a" * 40
AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _evaluation(detail: str) -> Evaluation:
    return Evaluation(
        at=AT,
        delivery="d-1",
        trigger="verified",
        outcome="ALLOW",
        reason="allow_low_risk",
        risk="LOW",
        detail=detail,
        inputs={"notes": []},  # a dict: the evaluation itself is not hashable
    )


def test_an_evaluated_result_is_compared_and_hashed_without_its_record() -> None:
    answered = Evaluated(Kind.DECIDED, SHA, Outcome.ALLOW, "allow_low_risk", "dispatched", 7)
    recorded = Evaluated(
        Kind.DECIDED, SHA, Outcome.ALLOW, "allow_low_risk", "dispatched", 7, _evaluation("x")
    )
    other_record = Evaluated(
        Kind.DECIDED, SHA, Outcome.ALLOW, "allow_low_risk", "dispatched", 7, _evaluation("y")
    )
    assert answered == recorded == other_record
    assert not answered != recorded  # noqa: SIM202  (`!=` is its own operator)
    assert hash(answered) == hash(recorded) == hash(other_record)
    assert len({answered, recorded, other_record}) == 1

    assert answered != Evaluated(Kind.DECIDED, SHA, Outcome.ALLOW, "allow_low_risk", None, 7)
    assert answered != Evaluated(
        Kind.UNCHANGED, SHA, Outcome.ALLOW, "allow_low_risk", "dispatched", 7
    )
    assert Evaluated(Kind.IN_PRODUCTION, SHA) != Ignored(SHA)


def test_results_answer_their_fields_in_field_order() -> None:
    evaluated = Evaluated(
        Kind.DECIDED, SHA, Outcome.HOLD, "high_risk_no_approval", "held", 7, _evaluation("x")
    )
    assert json.dumps(to_json(evaluated)) == json.dumps(
        {
            "result": "decided",
            "sha": SHA,
            "decision": "HOLD",
            "reason": "high_risk_no_approval",
            "dispatch": "held",
            "run_id": 7,
        }
    )
    freeze = Freeze(by="ops", reason="incident", since=AT, until=None, active=True)
    assert json.dumps(command_json(freeze)) == json.dumps(
        {
            "by": "ops",
            "reason": "incident",
            "since": "2026-12-04T12:00:00Z",
            "until": None,
            "active": True,
        }
    )


def test_a_reconcile_summary_shows_no_lock() -> None:
    summary = ReconcileSummary(started_at=AT)
    assert repr(summary) == (
        f"ReconcileSummary(started_at={AT!r}, finished_at=None, repositories=0, visited=0, "
        "swept_all=False, stopped_early=False, actions=Counter(), errors=[])"
    )
