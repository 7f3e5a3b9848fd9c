"""decide(): every rule of the table, in order, with its boundaries, and its invariants."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec
import pytest
from governor.decision import Outcome, Reason, decide, governor_error
from governor.policy import PolicyProblem
from governor.risk import Risk
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.decisions import (
    NOW,
    OTHER_SHA,
    SHA,
    approval,
    inputs,
    policy,
    risk,
    state,
)

MIN = timedelta(minutes=1)

# Every row switches off the trigger of the row above, so each rule is shown to win over
# every rule after it: removing or reordering any rule changes some row's answer.
EVERYTHING_WRONG: dict[str, Any] = {
    "policy": policy("enabled: false\n"),
    "superseded_by": OTHER_SHA,
    "state": state(production=None, emergency=True, failed_ago=MIN, dispatched_ago=(MIN,) * 6),
    "degraded": True,
    "risk": risk(Risk.HIGH, unknown=True),
}
ORDER = [
    ("disabled", {}, Reason.DISABLED, Outcome.IGNORE),
    (
        "policy_invalid",
        {"policy": PolicyProblem(key="cooldown_minutes", message="bad")},
        Reason.POLICY_INVALID,
        Outcome.HOLD,
    ),
    (
        "deploy_not_configured",
        {"policy": policy("deploy_workflow: null\n")},
        Reason.DEPLOY_NOT_CONFIGURED,
        Outcome.HOLD,
    ),
    ("superseded", {"policy": policy()}, Reason.SUPERSEDED, Outcome.HOLD),
    (
        "freeze_window",
        {"policy": policy(), "superseded_by": None},
        Reason.FREEZE_WINDOW,
        Outcome.HOLD,
    ),
    (
        "first_deploy_required",
        {
            "policy": policy("require_approval_for_first_deploy: true\n"),
            "superseded_by": None,
            "state": state(production=None, failed_ago=MIN, dispatched_ago=(MIN,) * 6),
        },
        Reason.FIRST_DEPLOY_REQUIRED,
        Outcome.HOLD,
    ),
    (
        "degraded_high_risk",
        {
            "policy": policy(),
            "superseded_by": None,
            "state": state(failed_ago=MIN, dispatched_ago=(MIN,) * 6),
        },
        Reason.DEGRADED_HIGH_RISK,
        Outcome.HOLD,
    ),
    (
        "cooldown",
        {
            "policy": policy(),
            "superseded_by": None,
            "state": state(failed_ago=MIN, dispatched_ago=(MIN,) * 6),
            "degraded": False,
        },
        Reason.COOLDOWN,
        Outcome.HOLD,
    ),
    (
        "rate_limit",
        {
            "policy": policy(),
            "superseded_by": None,
            "state": state(dispatched_ago=(MIN,) * 6),
            "degraded": False,
        },
        Reason.RATE_LIMIT,
        Outcome.HOLD,
    ),
    (
        "risk_unknown",
        {"policy": policy(), "superseded_by": None, "state": state(), "degraded": False},
        Reason.RISK_UNKNOWN,
        Outcome.HOLD,
    ),
]


@pytest.mark.parametrize(("name", "fix", "reason", "outcome"), ORDER, ids=[r[0] for r in ORDER])
def test_rule_order(name: str, fix: dict[str, Any], reason: Reason, outcome: Outcome) -> None:
    decision = decide(inputs(**{**EVERYTHING_WRONG, **fix}))
    assert (decision.reason, decision.outcome) == (reason, outcome), decision.detail


def test_a_first_deploy_is_judged_on_its_risk_unless_the_policy_asks_for_approval() -> None:
    first = state(production=None)
    assert decide(inputs(state=first, risk=risk(Risk.LOW))).reason is Reason.ALLOW_LOW
    strict = policy("require_approval_for_first_deploy: true\n")
    held = decide(inputs(policy=strict, state=first, risk=risk(Risk.LOW)))
    assert held.reason is Reason.FIRST_DEPLOY_REQUIRED
    approved = decide(inputs(policy=strict, state=first, approvals=(approval(),)))
    assert approved.reason is Reason.ALLOW_LOW


def test_no_policy_file_means_not_governed() -> None:
    decision = decide(inputs(policy=None, risk=risk(Risk.HIGH)))
    assert (decision.outcome, decision.reason) == (Outcome.IGNORE, Reason.DISABLED)


def test_invalid_policy_says_which_key() -> None:
    problem = PolicyProblem(key="freeze.timezone", message="unknown IANA time zone")
    decision = decide(inputs(policy=problem))
    assert decision.reason is Reason.POLICY_INVALID
    assert "freeze.timezone" in decision.detail


@pytest.mark.parametrize(
    ("level", "degraded", "reason", "outcome"),
    [
        (Risk.LOW, False, Reason.ALLOW_LOW, Outcome.ALLOW),
        (Risk.LOW, True, Reason.ALLOW_LOW, Outcome.ALLOW),  # degraded does not stop LOW
        (Risk.MEDIUM, True, Reason.DEGRADED_MEDIUM_HOLD, Outcome.HOLD),
        (Risk.MEDIUM, False, Reason.ALLOW_MEDIUM, Outcome.ALLOW),
        (Risk.HIGH, False, Reason.HIGH_RISK_NO_APPROVAL, Outcome.HOLD),
    ],
)
def test_risk_rules(level: Risk, degraded: bool, reason: Reason, outcome: Outcome) -> None:
    decision = decide(inputs(risk=risk(level), degraded=degraded))
    assert (decision.reason, decision.outcome, decision.risk) == (reason, outcome, level)


def test_high_risk_with_approval_for_this_sha_is_allowed() -> None:
    decision = decide(inputs(risk=risk(Risk.HIGH), approvals=(approval(SHA, "alice"),)))
    assert (decision.outcome, decision.reason) == (Outcome.ALLOW, Reason.ALLOW_HIGH_APPROVED)
    assert "alice" in decision.detail


def test_approval_for_another_sha_does_not_count() -> None:
    decision = decide(inputs(risk=risk(Risk.HIGH), approvals=(approval(OTHER_SHA),)))
    assert (decision.outcome, decision.reason) == (Outcome.HOLD, Reason.HIGH_RISK_NO_APPROVAL)


def test_approval_beats_environment_mode() -> None:
    env = policy("approval: {mode: environment}\n")
    approved = decide(inputs(policy=env, risk=risk(Risk.HIGH), approvals=(approval(),)))
    assert approved.reason is Reason.ALLOW_HIGH_APPROVED
    assert not approved.awaiting_environment_approval


def test_environment_mode_dispatches_and_waits_for_reviewers() -> None:
    env = policy("approval: {mode: environment}\n")
    decision = decide(inputs(policy=env, risk=risk(Risk.HIGH)))
    assert (decision.outcome, decision.reason) == (Outcome.ALLOW, Reason.ALLOW_HIGH_ENVIRONMENT)
    assert decision.awaiting_environment_approval


def test_degraded_high_risk_holds_even_when_approved() -> None:
    decision = decide(inputs(risk=risk(Risk.HIGH), degraded=True, approvals=(approval(),)))
    assert decision.reason is Reason.DEGRADED_HIGH_RISK


def test_unknown_risk_needs_an_approval() -> None:
    held = decide(inputs(risk=risk(Risk.HIGH, unknown=True)))
    assert (held.outcome, held.reason) == (Outcome.HOLD, Reason.RISK_UNKNOWN)
    approved = decide(inputs(risk=risk(Risk.HIGH, unknown=True), approvals=(approval(),)))
    assert approved.reason is Reason.ALLOW_HIGH_APPROVED


class TestFirstDeploy:
    STRICT = "require_approval_for_first_deploy: true\n"

    def test_without_approval_holds(self) -> None:
        decision = decide(inputs(policy=policy(self.STRICT), state=state(production=None)))
        assert decision.reason is Reason.FIRST_DEPLOY_REQUIRED

    def test_with_approval_goes_on_to_the_risk_rules(self) -> None:
        first = state(production=None)
        decision = decide(inputs(policy=policy(self.STRICT), state=first, approvals=(approval(),)))
        assert decision.reason is Reason.ALLOW_LOW

    def test_approval_of_another_sha_does_not_count(self) -> None:
        other = (approval(OTHER_SHA),)
        first = state(production=None)
        decision = decide(inputs(policy=policy(self.STRICT), state=first, approvals=other))
        assert decision.reason is Reason.FIRST_DEPLOY_REQUIRED

    def test_not_required_by_policy(self) -> None:
        relaxed = policy("require_approval_for_first_deploy: false\n")
        decision = decide(inputs(policy=relaxed, state=state(production=None)))
        assert decision.reason is Reason.ALLOW_LOW


class TestCooldown:
    def test_holds_until_the_end_of_the_cooldown(self) -> None:
        decision = decide(inputs(state=state(failed_ago=timedelta(minutes=29, seconds=59))))
        assert decision.reason is Reason.COOLDOWN
        assert decision.until == NOW + timedelta(seconds=1)

    def test_exactly_at_the_end_it_is_over(self) -> None:
        decision = decide(inputs(state=state(failed_ago=timedelta(minutes=30))))
        assert decision.reason is Reason.ALLOW_LOW

    def test_follows_the_policy(self) -> None:
        short = policy("cooldown_minutes: 5\n")
        assert (
            decide(inputs(policy=short, state=state(failed_ago=4 * MIN))).reason is Reason.COOLDOWN
        )
        assert (
            decide(inputs(policy=short, state=state(failed_ago=5 * MIN))).reason is Reason.ALLOW_LOW
        )

    def test_only_for_the_sha_that_failed(self) -> None:
        decision = decide(inputs(sha=OTHER_SHA, state=state(failed_ago=MIN)))
        assert decision.reason is Reason.ALLOW_LOW


class TestRateLimit:
    two_per_hour = "max_deploys_per_hour: 2\n"

    def test_holds_at_the_limit_until_the_oldest_leaves_the_hour(self) -> None:
        decision = decide(
            inputs(
                policy=policy(self.two_per_hour), state=state(dispatched_ago=(59 * MIN, 30 * MIN))
            )
        )
        assert decision.reason is Reason.RATE_LIMIT
        assert decision.until == NOW + MIN

    def test_a_dispatch_exactly_sixty_minutes_old_no_longer_counts(self) -> None:
        decision = decide(
            inputs(
                policy=policy(self.two_per_hour), state=state(dispatched_ago=(60 * MIN, 30 * MIN))
            )
        )
        assert decision.reason is Reason.ALLOW_LOW

    def test_below_the_limit_is_allowed(self) -> None:
        decision = decide(
            inputs(policy=policy(self.two_per_hour), state=state(dispatched_ago=(MIN,)))
        )
        assert decision.reason is Reason.ALLOW_LOW

    def test_until_is_when_enough_dispatches_have_left(self) -> None:
        # Limit 2, four in the hour: three must leave before one more fits under the limit;
        # the third-oldest (20 min ago) leaves the trailing hour in 40 minutes.
        decision = decide(
            inputs(
                policy=policy(self.two_per_hour),
                state=state(dispatched_ago=(50 * MIN, 40 * MIN, 20 * MIN, 10 * MIN)),
            )
        )
        assert decision.until == NOW + 40 * MIN


def test_freeze_hold_says_when_it_opens() -> None:
    weekly = policy(
        "freeze:\n  timezone: UTC\n  weekly:\n"
        "    - {days: [tue], start: '13:00', end: '15:30', reason: release review}\n"
    )
    decision = decide(inputs(policy=weekly))
    assert decision.reason is Reason.FREEZE_WINDOW
    assert decision.until == NOW + timedelta(minutes=90)
    assert "release review" in decision.detail


def test_emergency_freeze_with_an_end_lifts_by_itself() -> None:
    frozen = state(emergency=True).model_copy()
    assert frozen.emergency_freeze is not None
    ended = frozen.model_copy(
        update={"emergency_freeze": frozen.emergency_freeze.model_copy(update={"until": NOW})}
    )
    assert decide(inputs(state=frozen)).reason is Reason.FREEZE_WINDOW
    assert decide(inputs(state=ended)).reason is Reason.ALLOW_LOW


def test_governor_error_is_a_hold() -> None:
    decision = governor_error("GitHub answered 502 three times")
    assert (decision.outcome, decision.reason) == (Outcome.HOLD, Reason.GOVERNOR_ERROR)


# -- properties -------------------------------------------------------------------------

approval_modes = st.sampled_from(["label", "comment", "environment"])


@st.composite
def any_inputs(draw: st.DrawFn) -> Any:
    mode = draw(approval_modes)
    first = draw(st.booleans())
    per_hour = draw(st.integers(1, 5))
    cooldown = draw(st.integers(0, 120))
    frozen_weekly = draw(st.booleans())
    freeze_yaml = (
        "freeze:\n  weekly:\n    - {days: [tue], start: '00:00', end: '24:00'}\n"
        if frozen_weekly
        else ""
    )
    pol = policy(
        f"approval: {{mode: {mode}}}\nrequire_approval_for_first_deploy: {str(first).lower()}\n"
        f"max_deploys_per_hour: {per_hour}\ncooldown_minutes: {cooldown}\n{freeze_yaml}"
    )
    minutes = st.integers(0, 180).map(lambda m: timedelta(minutes=m))
    st_state = state(
        production=draw(st.sampled_from([None, "c" * 40])),
        dispatched_ago=tuple(draw(st.lists(minutes, max_size=8))),
        failed_ago=draw(st.none() | minutes),
        emergency=draw(st.booleans()),
    )
    approvals = tuple(
        approval(sha=draw(st.sampled_from([SHA, OTHER_SHA])), by=f"user{i}")
        for i in range(draw(st.integers(0, 2)))
    )
    return inputs(
        policy=pol,
        state=st_state,
        risk=risk(draw(st.sampled_from(list(Risk))), unknown=draw(st.booleans())),
        degraded=draw(st.booleans()),
        approvals=approvals,
        superseded_by=draw(st.none() | st.just(OTHER_SHA)),
    )


def _frozen(i: Any) -> bool:
    return i.state.emergency_freeze is not None or bool(i.policy.freeze.weekly)


def _approved(i: Any) -> bool:
    return any(a.sha == i.sha for a in i.approvals)


@settings(max_examples=400, deadline=None)
@given(any_inputs())
def test_never_allows_while_frozen(i: Any) -> None:
    if _frozen(i):
        assert decide(i).outcome is not Outcome.ALLOW


@settings(max_examples=400, deadline=None)
@given(any_inputs())
def test_never_allows_high_risk_without_an_approval_for_that_sha(i: Any) -> None:
    decision = decide(i)
    if decision.allowed and i.risk.level is Risk.HIGH:
        # environment mode: the deploy job's environment reviewers are the approval
        assert _approved(i) or decision.awaiting_environment_approval


@settings(max_examples=400, deadline=None)
@given(any_inputs())
def test_never_allows_unknown_risk_without_an_approval(i: Any) -> None:
    if i.risk.unknown and not _approved(i):
        decision = decide(i)
        assert not decision.allowed or decision.awaiting_environment_approval


@settings(max_examples=400, deadline=None)
@given(any_inputs())
def test_an_approval_never_turns_allow_into_hold(i: Any) -> None:
    before = decide(i)
    after = decide(msgspec.structs.replace(i, approvals=(*i.approvals, approval(SHA, "late"))))
    if before.allowed:
        assert after.allowed


@settings(max_examples=200, deadline=None)
@given(any_inputs())
def test_decide_is_deterministic(i: Any) -> None:
    assert decide(i) == decide(i)
