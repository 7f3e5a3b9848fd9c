"""`governor simulate REPO SHA [--live]`: decide a SHA again.

From the record (the default): every stored evaluation that kept its inputs (`replay`)
is decided again by the pure rules (`gate.judge`, on the stored facts, both policies
parsed again from their texts, and the release state the decision was made on) and
compared with what was stored: outcome, reason, risk, detail, `until` and the inputs
kept. Reproduced, a mismatch, or not reproducible (no inputs kept: restored from a
dispatch intent, a rollback, or recorded before inputs were kept). A mismatch under the
rules version the evaluation was made with is a bug (exit 1); under other rules, the
rules changed (exit 5). Reads the store only.

`--live`: the facts gathered afresh from GitHub through the App, on the release state in
the store now, and judged: what would happen now. Nothing is written, no status posted,
nothing dispatched.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from msgspec.structs import replace

from governor import messages
from governor.commands import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_RULES_CHANGED,
    CommandError,
    repos,
)
from governor.commands.render import short, when
from governor.decision import RULES_VERSION, Outcome, Reason
from governor.gate import StaleFacts, judge
from governor.ledger import DecisionRecord, Evaluation, Ledger
from governor.policy import Mode, Policy
from governor.replay import Difference, Judged, Replay, decide_again, differences
from governor.state import ReleaseState
from governor.store import ObjectStore

if TYPE_CHECKING:
    from governor.wiring import Governor

Result = Literal["reproduced", "mismatch", "not_reproducible"]
LiveState = Literal["decided", "in_production", "dispatched", "ignored"]

NOT_REPRODUCIBLE_RESTORED = (
    "restored from its dispatch intent: the delivery that decided died before recording "
    "it, and its inputs with it"
)
NOT_REPRODUCIBLE_ROLLBACK = (
    "a rollback: decided by the rollback rules (`decide_rollback`), not the gate's; its "
    "inputs are not kept"
)
NOT_REPRODUCIBLE_FAIL_CLOSED = "a fail-closed hold: the governor failed, the rules did not decide"
NOT_REPRODUCIBLE_LEGACY = "recorded before evaluations kept their inputs (no replay data)"


class Decided(msgspec.Struct, frozen=True):
    outcome: str
    reason: str
    risk: str | None
    detail: str
    until: datetime | None


class Simulated(msgspec.Struct, frozen=True):
    """One stored evaluation, decided again."""

    at: datetime
    trigger: str
    recorded: Decided
    """What the evaluation recorded (and the status said)."""
    result: Result
    why: str | None
    """Not reproducible: why not. Mismatch: what does not fit (the stored inputs may not
    fit together at all: judge refused them)."""
    rules_version: int | None
    """The rules version it was decided under (None: no replay data)."""
    rules: Decided | None
    """What the rules decided, as stored: `recorded` unless overridden at dispatch."""
    override: Literal["frozen", "refused"] | None
    """The rules allowed it; at dispatch an operator's freeze (`frozen`) or GitHub's
    refusal (`refused`) held it."""
    replayed: Decided | None
    """What the rules decide on the stored inputs now (None: not decided)."""
    differences: tuple[Difference, ...]


class Simulation(msgspec.Struct, frozen=True):
    repo_id: int
    repo: str
    sha: str
    rules_version: int
    """The rules version of this governor."""
    total_evaluations: int
    evaluations: tuple[Simulated, ...]
    """The kept evaluations, oldest first."""
    reproduced: int
    mismatches: int
    not_reproducible: int
    rules_changed: bool
    """Every mismatch is of an evaluation made under another rules version."""

    @property
    def exit_code(self) -> int:
        if self.mismatches == 0:
            return EXIT_OK
        return EXIT_RULES_CHANGED if self.rules_changed else EXIT_ERROR


def _decided(source: Evaluation | Judged) -> Decided:
    return Decided(source.outcome, source.reason, source.risk, source.detail, source.until)


def _judged(evaluation: Evaluation) -> Judged:
    return Judged(
        outcome=evaluation.outcome,
        reason=evaluation.reason,
        risk=evaluation.risk,
        detail=evaluation.detail,
        until=evaluation.until,
    )


def _not_reproducible(evaluation: Evaluation) -> str:
    if evaluation.trigger.endswith(":restored") or evaluation.inputs.get("restored") is True:
        return NOT_REPRODUCIBLE_RESTORED
    if evaluation.trigger == "rollback":
        return NOT_REPRODUCIBLE_ROLLBACK
    if evaluation.reason == Reason.GOVERNOR_ERROR.value:
        return NOT_REPRODUCIBLE_FAIL_CLOSED
    return NOT_REPRODUCIBLE_LEGACY


def simulate_evaluation(evaluation: Evaluation, replay: Replay | None) -> Simulated:
    """Decide `evaluation` again from `replay` (its inputs, with their policy texts)."""
    recorded = _decided(evaluation)
    unreplayed = Simulated(
        at=evaluation.at,
        trigger=evaluation.trigger,
        recorded=recorded,
        result="not_reproducible",
        why=_not_reproducible(evaluation),
        rules_version=None,
        rules=None,
        override=None,
        replayed=None,
        differences=(),
    )
    if replay is None:
        return unreplayed
    override = replay.override
    judged = override.judged if override is not None else _judged(evaluation)
    rules = _decided(judged)
    at_dispatch = override.at_dispatch if override is not None else None
    try:
        verdict, facts = decide_again(replay)
    except (StaleFacts, LookupError) as exc:
        return replace(
            unreplayed,
            result="mismatch",
            why=f"the stored inputs do not fit together: {exc}",
            rules_version=replay.rules_version,
            rules=rules,
            override=at_dispatch,
        )
    found = differences(judged, evaluation.inputs, verdict, facts)
    again = verdict.decision
    replayed = Decided(
        again.outcome.value,
        again.reason.value,
        again.risk.value if again.risk else None,
        again.detail,
        again.until,
    )
    return Simulated(
        at=evaluation.at,
        trigger=evaluation.trigger,
        recorded=recorded,
        result="mismatch" if found else "reproduced",
        why=None,
        rules_version=replay.rules_version,
        rules=rules,
        override=at_dispatch,
        replayed=replayed,
        differences=found,
    )


def simulate_record(record: DecisionRecord, repo_id: int, repo: str) -> Simulation:
    done = tuple(simulate_evaluation(e, record.replay_of(e)) for e in record.evaluations)
    mismatched = [s for s in done if s.result == "mismatch"]
    return Simulation(
        repo_id=repo_id,
        repo=repo,
        sha=record.sha,
        rules_version=RULES_VERSION,
        total_evaluations=record.total_evaluations,
        evaluations=done,
        reproduced=sum(s.result == "reproduced" for s in done),
        mismatches=len(mismatched),
        not_reproducible=sum(s.result == "not_reproducible" for s in done),
        rules_changed=bool(mismatched)
        and all(s.rules_version != RULES_VERSION for s in mismatched),
    )


def simulate(store: ObjectStore, state: ReleaseState, sha: str) -> Simulation:
    """Every stored evaluation of `sha`, decided again from its stored inputs."""
    record = Ledger(store).read_decision(state.repo_id, sha)
    if record is None or not record.evaluations:
        raise CommandError(
            f"no decision recorded for {sha} in {state.repo} (never verified on the default "
            "branch, or the record expired)",
            EXIT_ERROR,
        )
    return simulate_record(record, state.repo_id, state.repo)


# -- live --------------------------------------------------------------------------------


class LiveSimulation(msgspec.Struct, frozen=True):
    """What the governor would do with the SHA now, from fresh facts. Nothing was done."""

    repo_id: int
    repo: str
    sha: str
    state: LiveState
    """`decided`; `in_production`, `dispatched` (not decided again while its dispatch
    stands); `ignored` (not governed, or not on the default branch)."""
    why: str | None
    """What was found instead of a decision (not `decided`)."""
    production_sha: str | None
    state_version: int
    """The release state it was decided on."""
    rules_version: int
    trusted_policy: str | None
    """Where the trusted policy was read."""
    mode: str | None
    decision: Decided | None
    decided_by: str | None
    would: str | None
    """What the governor would do: dispatch, or the commit status it would post."""
    inputs: dict[str, Any]
    """As an evaluation would record them (docs/cli.md, `explain`)."""
    stored: Decided | None
    """The latest stored evaluation, for comparison (None: no record)."""


def live(governor: Governor, repo_text: str, sha_text: str) -> LiveSimulation:
    """Gather the facts for SHA from GitHub as the verification flow does and judge them
    on the release state in the store now. Reads only."""
    from governor.flows import verification
    from governor.flows.context import mode_of

    ctx = governor.context
    repo, _production = repos.locate(governor, repo_text)
    state = ctx.ledger.read_state(repo.id, repo.full_name)
    sha = repos.resolve_sha(governor.store, state, sha_text)
    record = ctx.ledger.read_decision(repo.id, sha)
    latest = record.latest if record is not None else None

    def found(kind: LiveState, why: str, *, source: str | None = None) -> LiveSimulation:
        return LiveSimulation(
            repo_id=repo.id,
            repo=repo.full_name,
            sha=sha,
            state=kind,
            why=why,
            production_sha=state.production_sha,
            state_version=state.version,
            rules_version=RULES_VERSION,
            trusted_policy=source,
            mode=None,
            decision=None,
            decided_by=None,
            would=None,
            inputs={},
            stored=_decided(latest) if latest is not None else None,
        )

    if state.production_sha == sha:
        return found("in_production", f"{sha} is in production")
    standing = state.dispatch_for(sha)
    if standing is not None:
        run = f"run {standing.run_id}" if standing.run_id else "its run not found yet"
        return found("dispatched", f"dispatched {when(standing.at)} ({run})")
    reads = verification.read_wave(ctx, repo, sha, state)
    trusted = reads.trusted(repo)
    policy = trusted.policy
    if policy is None or (isinstance(policy, Policy) and not policy.enabled):
        why = f"{repo.full_name} is not governed ({trusted.source})"
        return found("ignored", why, source=trusted.source)
    reachable = reads.reachable.result()
    if not reachable.head_is_ancestor:
        why = f"{sha} is not on {repo.default_ref} ({reachable.status})"
        return found("ignored", why, source=trusted.source)
    facts = reads.facts(ctx, repo, sha, trusted)
    try:
        verdict = judge(facts, state)
    except StaleFacts as exc:  # the facts were gathered for this very state
        raise CommandError(f"the facts do not fit the release state: {exc}", EXIT_ERROR) from None
    decision = verdict.decision
    mode = mode_of(ctx, policy)
    if decision.outcome is Outcome.IGNORE:
        would = "nothing: the repository is not governed"
    elif decision.allowed and mode is Mode.ENFORCE and isinstance(policy, Policy):
        ref = policy.deploy_ref or repo.default_branch
        would = (
            f"dispatch {policy.deploy_workflow} on {ref} with sha={sha} (unless an operator "
            "freezes first)"
        )
    else:
        status, description = messages.commit_status(decision, policy, mode)
        would = f"post the status {status}: {description}"
    return LiveSimulation(
        repo_id=repo.id,
        repo=repo.full_name,
        sha=sha,
        state="decided",
        why=None,
        production_sha=state.production_sha,
        state_version=state.version,
        rules_version=RULES_VERSION,
        trusted_policy=trusted.source,
        mode=mode.value,
        decision=Decided(
            decision.outcome.value,
            decision.reason.value,
            decision.risk.value if decision.risk else None,
            decision.detail,
            decision.until,
        ),
        decided_by=verdict.decided_by,
        would=would,
        inputs=verdict.summary(facts),
        stored=_decided(latest) if latest is not None else None,
    )


# -- text --------------------------------------------------------------------------------


def _decision(decided: Decided) -> str:
    risk = f" ({decided.risk})" if decided.risk else ""
    until = f" until {when(decided.until)}" if decided.until else ""
    return f"{decided.outcome} {decided.reason}{risk}{until}: {decided.detail}"


def _value(value: object) -> str:
    if isinstance(value, datetime):
        return when(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _verdict_line(s: Simulated, current: int) -> str:
    if s.result == "reproduced":
        return "reproduced"
    if s.result == "not_reproducible":
        return f"not reproducible: {s.why}"
    if s.rules_version == current:
        return (
            f"MISMATCH under the same rules (version {current}): the decision is not a pure "
            "function of what was stored"
        )
    return f"MISMATCH: decided under rules version {s.rules_version}, these are version {current}"


def render_simulation(result: Simulation) -> list[str]:
    kept = len(result.evaluations)
    lines = [
        f"{result.repo} {result.sha}",
        f"{kept} evaluations kept of {result.total_evaluations}, decided again under rules "
        f"version {result.rules_version}:",
    ]
    for s in result.evaluations:
        lines.append(f"  {when(s.at)}  {s.trigger}: {_decision(s.recorded)}")
        if s.override is not None and s.rules is not None:
            happened = "frozen" if s.override == "frozen" else "GitHub refused the dispatch"
            lines.append(
                f"      the rules said {s.rules.outcome} {s.rules.reason}; at dispatch: {happened}"
            )
        lines.append(f"      {_verdict_line(s, result.rules_version)}")
        if s.result == "mismatch" and s.why:
            lines.append(f"      {s.why}")
        for d in s.differences:
            lines.append(
                f"      {d.field}: stored {_value(d.stored)}, replayed {_value(d.replayed)}"
            )
    lines.append(
        f"reproduced {result.reproduced}, mismatches {result.mismatches}, "
        f"not reproducible {result.not_reproducible}"
    )
    return lines


def render_live(result: LiveSimulation) -> list[str]:
    lines = [
        f"{result.repo} {result.sha} now (from GitHub, nothing done)",
        f"production: {short(result.production_sha)}; release state version "
        f"{result.state_version}; rules version {result.rules_version}",
    ]
    if result.decision is None:
        lines.append(f"{result.state.replace('_', ' ')}: {result.why}")
    else:
        by = "the SHA's own policy" if result.decided_by == "own" else "the trusted policy"
        lines.append(f"would decide: {_decision(result.decision)}")
        lines.append(
            f"decided by {by} (trusted policy read at {result.trusted_policy}); mode {result.mode}"
        )
        lines.append(f"would: {result.would}")
        for key, value in sorted(result.inputs.items()):
            lines.append(f"  {key}: {_value(value)}")
    if result.stored is not None:
        lines.append(f"stored (latest): {_decision(result.stored)}")
    return lines
