"""Verification succeeded: evaluate the SHA, then dispatch it or hold it.

gather  one read of the state, then one wave of GitHub reads: the trusted policy
        (production's and the default branch's), the SHA's own policy,
        reachability, the compares the state calls for, the first deploy's own
        change, the degraded-production issues; the delivery's claim is written
        while they are in flight
plan    `governor.gate.judge` under both policies, made again inside the
        conditional write that records the intent or the hold
act     dispatch (guarded by the intent), then the run's id and the status
        together; the evaluation is recorded with the claim's finish, in the SHA's
        decision record (one write)
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any, Final

import msgspec
from msgspec.structs import replace

from governor import crashpoints
from governor import state as transitions
from governor.deadline import DeadlineExceeded
from governor.decision import Decision, Outcome, Reason, emergency_freeze, governor_error
from governor.deploy_runs import workflow_path
from governor.events import WorkflowRunCompleted, identity
from governor.flows import dispatch
from governor.flows.context import (
    Context,
    MaybePolicy,
    Repo,
    Trusted,
    choose_trusted,
    claimed,
    mode_of,
    post_dispatched_status,
    post_status,
    read_trusted,
    start_wave,
    wave,
)
from governor.flows.results import Duplicate, Evaluated, Ignored, InProgress, Kind
from governor.gate import Facts, StaleFacts, Verdict, bases_needed, judge
from governor.github.client import RateLimited
from governor.ledger import Evaluation
from governor.policy import DEFAULT_DEGRADED_LABEL, POLICY_PATH, Mode, Policy, parse_policy
from governor.replay import Override, Replay, capture, judged_of
from governor.risk import Comparison
from governor.state import Dispatch, EmergencyFreeze, ReleaseState
from governor.store import WriteContention
from governor.store.envelope import new_token

log = logging.getLogger("governor.flows.verification")

RECONCILE: Final = "reconcile"
"""The trigger of evaluations the scheduled reconcile makes."""


def on_verification(
    ctx: Context, repo: Repo, event: WorkflowRunCompleted, delivery: str
) -> Evaluated | Ignored | Duplicate | InProgress:
    run = event.workflow_run
    why = _not_a_verification(repo, event)
    if why:
        return Ignored(why)  # decided from the payload alone: nothing claimed, nothing written
    site = ctx.ledger.decision_site(repo.id, repo.full_name, run.head_sha, identity(event))
    # The reads go out first and the claim is written while they are in flight: reads
    # change nothing, so a duplicate delivery wastes a wave of GETs and no more.
    gathered = gather(ctx, repo, run.head_sha)
    return claimed(
        ctx,
        site,
        "workflow_run",
        delivery,
        lambda _claim: evaluate(
            ctx,
            repo,
            run.head_sha,
            trigger="verified",
            delivery=delivery,
            run=(run.name, run.path),
            record=False,
            gathered=gathered,
        ),
    )


def evaluate(  # noqa: PLR0911  (one return per outcome)
    ctx: Context,
    repo: Repo,
    sha: str,
    *,
    trigger: str,
    delivery: str | None,
    run: tuple[str | None, str | None] | None = None,
    record: bool = True,
    gathered: Gathered | None = None,
) -> Evaluated | Ignored:
    """Decide for `sha` and act on the decision; safe to repeat.

    `run`: the verification run's workflow name and path, checked against the trusted
    policy's verification workflow (None when an approval or a retry evaluates again).
    `record`: write the evaluation to the decision record here; False when the caller
    writes it with its claim's finish (it comes back in the result).
    `gathered`: the state and its reads, started by the caller (`gather`); read here if
    None.
    """
    if gathered is None:
        gathered = gather(ctx, repo, sha)
    state = gathered.state
    if state.production_sha == sha:
        return Evaluated(Kind.IN_PRODUCTION, sha)
    stale_intent: str | None = None
    live = state.dispatch_for(sha)
    if live is not None:
        standing = _standing(
            ctx, repo, state, live, trigger=trigger, delivery=delivery, record=record
        )
        if standing is not None:
            return standing
        stale_intent = live.intent_id  # it never started: decide again, as if never written

    reads = gathered.reads or read_wave(ctx, repo, sha, state)
    trusted = reads.trusted(repo)
    policy = trusted.policy
    if policy is None or (isinstance(policy, Policy) and not policy.enabled):
        return Ignored(f"{repo.full_name} is not governed ({trusted.source})")
    if run is not None and isinstance(policy, Policy):
        name, path = run
        if not _workflow_matches(policy.verification_workflow, name, path):
            return Ignored(f"workflow '{name}' is not '{policy.verification_workflow}'")
    mode = mode_of(ctx, policy)
    try:
        reachable = reads.reachable.result()
        if not reachable.head_is_ancestor:
            return Ignored(f"{sha} is not on {repo.default_ref} ({reachable.status})")
        facts = reads.facts(ctx, repo, sha, trusted)
        texts = reads.policy_texts(trusted)
        committed = _plan_on_fresh_state(ctx, repo, facts, texts, mode, stale_intent=stale_intent)
        if committed is None:
            return _hold_after_churn(ctx, repo, sha, trusted, mode)
        return _act(
            ctx,
            repo,
            committed,
            mode,
            trigger=trigger,
            delivery=delivery,
            stale_intent=stale_intent,
            record=record,
        )
    except (WriteContention, RateLimited, DeadlineExceeded):
        raise  # transient: nothing decided; the redelivery decides
    except Exception:
        if isinstance(policy, Policy):
            fail_closed(ctx, repo, sha, policy, mode)
        raise


def _standing(
    ctx: Context,
    repo: Repo,
    state: ReleaseState,
    live: Dispatch,
    *,
    trigger: str,
    delivery: str | None,
    record: bool,
) -> Evaluated | None:
    """What stands for a SHA with a dispatch (None: its intent never started a run)."""
    recorded = None if live.workflow else read_trusted(repo, state.production_sha).governing
    standing = dispatch.resume(ctx, repo, recorded, live)
    if standing is None:
        return None
    if standing.kind is Kind.DISPATCH_RECOVERED or (
        standing.kind is Kind.ALREADY_DISPATCHED and trigger == "verified"
    ):
        # The delivery that dispatched it may have died before its status and its
        # evaluation: say and record them now.
        restored = restore_dispatched(
            ctx, repo, live, standing.run_id, trigger=trigger, delivery=delivery
        )
        if record:
            ctx.ledger.record_evaluation(repo.id, repo.full_name, live.sha, restored)
        return replace(standing, record=None if record else restored)
    return standing


# -- gather ------------------------------------------------------------------------------


class Reads(msgspec.Struct):
    """One wave of GitHub reads for one SHA on one state, answered as futures."""

    production_sha: str | None
    on_default: Future[str | None]
    at_production: Future[str | None] | None
    own: Future[str | None]
    reachable: Future[Comparison]
    comparisons: dict[str, Future[Comparison]]
    own_change: Future[Comparison] | None
    global_freeze: Future[EmergencyFreeze | None]
    degraded: dict[str, Future[list[dict[str, Any]]]] = msgspec.field(default_factory=dict)

    def trusted(self, repo: Repo) -> Trusted:
        at_production = self.at_production.result() if self.at_production else None
        return choose_trusted(repo, self.production_sha, at_production, self.on_default.result())

    def policy_texts(self, trusted: Trusted) -> PolicyTexts:
        """The texts `trusted` and the SHA's own policy were parsed from (for the replay)."""
        at_production = self.production_sha is not None and (
            trusted.source == f"production {self.production_sha}"
        )
        chosen = self.at_production if at_production else self.on_default
        return PolicyTexts(chosen.result() if chosen else None, self.own.result())

    def facts(self, ctx: Context, repo: Repo, sha: str, trusted: Trusted) -> Facts:
        own = parse_policy(self.own.result())
        labels = {
            p.degraded.issue_label
            for p in (trusted.policy, own)
            if isinstance(p, Policy) and p.degraded.issue_label is not None
        }
        missing = labels - self.degraded.keys()
        if missing:  # a policy names another label than the one read on speculation
            with wave() as w:
                for label in sorted(missing):
                    self.degraded[label] = w.read(repo.api.open_issues_with_label, label)
        return Facts(
            sha=sha,
            production_sha=self.production_sha,
            trusted=trusted.policy,
            trusted_source=trusted.source,
            own=own,
            comparisons={base: f.result() for base, f in self.comparisons.items()},
            own_change=self.own_change.result() if self.own_change else None,
            degraded_labels=frozenset(label for label in labels if self.degraded[label].result()),
            now=ctx.clock(),
            global_freeze=self.global_freeze.result(),
        )


class Gathered(msgspec.Struct, frozen=True):
    """The state, and the wave of reads it calls for, in flight (None: none is needed
    yet, because `sha` is in production or has a dispatch)."""

    state: ReleaseState
    reads: Reads | None


def gather(ctx: Context, repo: Repo, sha: str) -> Gathered:
    """Read the state, and start the wave of reads it calls for without waiting for it."""
    state = ctx.ledger.read_state(repo.id, repo.full_name)
    if state.production_sha == sha or state.dispatch_for(sha) is not None:
        return Gathered(state, None)
    return Gathered(state, read_wave(ctx, repo, sha, state))


def read_wave(ctx: Context, repo: Repo, sha: str, state: ReleaseState) -> Reads:
    """Every GitHub read for `sha` on `state`, and the freeze of every repository: all in
    flight when this returns, each waited for where it is used."""
    api, production = repo.api, state.production_sha
    w = start_wave()
    reads = Reads(
        production_sha=production,
        on_default=w.read(api.file_text, POLICY_PATH, repo.default_ref),
        at_production=w.read(api.file_text, POLICY_PATH, production) if production else None,
        own=w.read(api.file_text, POLICY_PATH, sha),
        reachable=w.read(api.compare, repo.default_ref, sha),
        comparisons={b: w.read(api.compare, b, sha) for b in sorted(bases_needed(state, sha))},
        own_change=w.read(api.commit_change, sha) if production is None else None,
        global_freeze=w.read(ctx.ledger.read_global_freeze),
    )
    # Read on speculation: most policies keep the default label.
    reads.degraded[DEFAULT_DEGRADED_LABEL] = w.read(
        api.open_issues_with_label, DEFAULT_DEGRADED_LABEL
    )
    return reads


# -- plan --------------------------------------------------------------------------------


class PolicyTexts(msgspec.Struct, frozen=True):
    """The policy files as read: the trusted one (None: no file) and the SHA's own."""

    trusted: str | None
    own: str | None


class _Committed(msgspec.Struct):
    """What the conditional write that commits a decision saw and did."""

    facts: Facts
    texts: PolicyTexts
    intent: str
    verdict: Verdict | None = None
    judged_on: ReleaseState | None = None
    """The state `verdict` was judged on, in the attempt of the write that succeeded."""
    state: ReleaseState | None = None
    kind: Kind = Kind.DECIDED
    run_id: int | None = None


def _plan_on_fresh_state(
    ctx: Context,
    repo: Repo,
    facts: Facts,
    texts: PolicyTexts,
    mode: Mode,
    *,
    stale_intent: str | None,
) -> _Committed | None:
    """Commit the decision; if the state moved on in a way the facts do not cover (another
    instance, another SHA), gather once more on it. None if it moved on twice."""
    intent = new_token()
    try:
        return _commit(ctx, repo, facts, texts, mode, intent=intent, stale_intent=stale_intent)
    except StaleFacts as stale:
        fresh = ctx.ledger.read_state(repo.id, repo.full_name)
        reads = read_wave(ctx, repo, facts.sha, fresh)
        trusted = reads.trusted(repo)
        try:
            fresh_facts = reads.facts(ctx, repo, facts.sha, trusted)
            fresh_texts = reads.policy_texts(trusted)
            return _commit(
                ctx,
                repo,
                fresh_facts,
                fresh_texts,
                mode,
                intent=intent,
                stale_intent=stale_intent,
            )
        except StaleFacts as again:
            log.warning("state changed twice while deciding: %s; %s", stale, again)
            return None


def _commit(
    ctx: Context,
    repo: Repo,
    facts: Facts,
    texts: PolicyTexts,
    mode: Mode,
    *,
    intent: str,
    stale_intent: str | None,
) -> _Committed:
    """Decide again on the state being replaced, and write the decision in the same CAS.

    `stale_intent`: a run-less intent of this SHA that never started a run; it is judged
    as if it had never been written, and replaced (or dropped) in the same write.
    """
    sha, now, policy = facts.sha, facts.now, facts.trusted
    committed = _Committed(facts, texts, intent)

    def decide_on(state: ReleaseState) -> ReleaseState:
        committed.verdict, committed.judged_on = None, None
        committed.kind, committed.run_id = Kind.DECIDED, None
        if state.production_sha == sha:
            committed.kind = Kind.IN_PRODUCTION
            return state
        if stale_intent is not None:
            state = transitions.intent_abandoned(state, sha, stale_intent, now)
        live = state.dispatch_for(sha)
        if live is not None:
            committed.kind, committed.run_id = Kind.ALREADY_DISPATCHED, live.run_id
            return state
        verdict = judge(facts, state)
        committed.verdict, committed.judged_on = verdict, state
        decision = verdict.decision
        if decision.allowed and mode is Mode.ENFORCE:
            assert isinstance(policy, Policy) and policy.deploy_workflow is not None
            return transitions.record_intent(
                state,
                sha,
                intent,
                now,
                workflow=policy.deploy_workflow,
                ref=policy.deploy_ref or repo.default_branch,
                decided=(
                    decision.reason.value,
                    decision.risk.value if decision.risk else None,
                    decision.detail,
                ),
            )
        if decision.reason is Reason.SUPERSEDED:
            return transitions.superseded(state, sha, now)
        if decision.outcome is Outcome.HOLD:
            return transitions.hold_recorded(state, sha, decision.reason.value, decision.until, now)
        return state

    committed.state = ctx.ledger.transition(repo.id, repo.full_name, decide_on)
    return committed


# -- act ---------------------------------------------------------------------------------


def _act(
    ctx: Context,
    repo: Repo,
    committed: _Committed,
    mode: Mode,
    *,
    trigger: str,
    delivery: str | None,
    stale_intent: str | None,
    record: bool,
) -> Evaluated | Ignored:
    facts, verdict = committed.facts, committed.verdict
    sha = facts.sha
    if verdict is None:
        return Evaluated(committed.kind, sha, run_id=committed.run_id)
    decision = verdict.decision
    if decision.outcome is Outcome.IGNORE:
        return Ignored(decision.detail)
    policy = facts.trusted
    kind, sent = Kind.DECIDED, None
    override: Override | None = None
    if decision.allowed and mode is Mode.ENFORCE:
        assert committed.state is not None
        live = committed.state.dispatch_for(sha)
        if live is None or live.intent_id != committed.intent:
            return Evaluated(
                Kind.DECIDED,
                sha,
                decision.outcome,
                decision.reason.value,
                dispatch="another instance is dispatching",
            )
        crashpoints.reached("verification.intent")
        decision, sent, override = _dispatch(ctx, repo, live, decision, policy=policy, mode=mode)
        if sent is not None and stale_intent is not None:
            kind = Kind.REDISPATCHED
    evaluation = Evaluation(
        at=facts.now,
        delivery=delivery,
        trigger=trigger,
        outcome=decision.outcome.value,
        reason=decision.reason.value,
        risk=decision.risk.value if decision.risk else None,
        detail=decision.detail,
        until=decision.until,
        inputs=verdict.summary(facts),
        replay=_replay(committed, override),
    )
    if sent is None:  # (a dispatch posts the status with the run's write)
        if trigger == RECONCILE and _decided_so_before(ctx, repo, sha, evaluation):
            # A hold re-checked on schedule that still holds: its status and record stand.
            return Evaluated(Kind.UNCHANGED, sha, decision.outcome, decision.reason.value)
        post_status(ctx, repo, sha, decision, policy=policy, mode=mode)
    if decision.outcome is Outcome.HOLD:
        _dispatched_since(ctx, repo, sha)
    crashpoints.reached("verification.status")
    if record:
        ctx.ledger.record_evaluation(repo.id, repo.full_name, sha, evaluation)
    log.info(
        "decided",
        extra={
            "repo": repo.full_name,
            "sha": sha,
            "decision": decision.outcome.value,
            "reason": decision.reason.value,
            "delivery": delivery,
        },
    )
    return Evaluated(
        kind,
        sha,
        decision.outcome,
        decision.reason.value,
        dispatch=sent,
        record=None if record else evaluation,
    )


def _dispatch(
    ctx: Context,
    repo: Repo,
    live: Dispatch,
    decision: Decision,
    *,
    policy: MaybePolicy,
    mode: Mode,
) -> tuple[Decision, str | None, Override | None]:
    """Dispatch `live`, posting the status with the run's write; a freeze set since the
    decision, or GitHub's refusal, holds it instead. Returns the decision that stands,
    what the dispatch did (None: nothing dispatched), and the override of the judged one.
    """
    frozen = frozen_at_dispatch(ctx, repo, live, decision)
    if frozen is not None:
        return frozen, None, Override(at_dispatch="frozen", judged=judged_of(decision))
    try:
        sent = dispatch.send(
            ctx,
            repo,
            live,
            then=lambda: post_status(ctx, repo, live.sha, decision, policy=policy, mode=mode),
        )
    except dispatch.DispatchRefused as refusal:
        # Any other error leaves the intent standing: recovery decides.
        held = _refused(ctx, repo, live, decision, refusal)
        return held, None, Override(at_dispatch="refused", judged=judged_of(decision))
    return decision, sent, None


def _replay(committed: _Committed, override: Override | None) -> Replay:
    """What the rules decided on, from the write that committed the decision."""
    assert committed.judged_on is not None  # judged: the verdict came with its state
    return capture(
        committed.facts,
        trusted_text=committed.texts.trusted,
        own_text=committed.texts.own,
        state=committed.judged_on,
        override=override,
    )


def frozen_at_dispatch(
    ctx: Context, repo: Repo, live: Dispatch, decision: Decision
) -> Decision | None:
    """The operators' freezes, read again right before the dispatch: a freeze set since
    the decision holds the SHA (its intent is dropped, so it is decided again once the
    freeze is lifted). None: no freeze, dispatch. A freeze set after this read does not
    stop this dispatch: its run is cancelled in GitHub if need be (docs/operations.md)."""
    with wave() as w:
        everywhere = w.read(ctx.ledger.read_global_freeze)
        state = w.read(ctx.ledger.read_state, repo.id, repo.full_name)
    now = ctx.clock()
    freeze = emergency_freeze(state.result(), everywhere.result(), now)
    if freeze is None:
        return None
    held = Decision(Outcome.HOLD, Reason.FREEZE_WINDOW, decision.risk, freeze.reason, freeze.until)
    ctx.ledger.transition(
        repo.id,
        repo.full_name,
        lambda s: transitions.hold_recorded(
            transitions.intent_abandoned(s, live.sha, live.intent_id, now),
            live.sha,
            held.reason.value,
            held.until,
            now,
        ),
    )
    log.info("frozen at dispatch", extra={"repo": repo.full_name, "sha": live.sha})
    return held


def _refused(
    ctx: Context, repo: Repo, live: Dispatch, decision: Decision, exc: dispatch.DispatchRefused
) -> Decision:
    """GitHub refused the dispatch (no such workflow, no `workflow_dispatch` trigger, an
    input it does not take, no permission): nothing was dispatched. The intent is
    dropped and the SHA held for a person to fix the deploy workflow or the App."""
    workflow = live.workflow or "the deploy workflow"
    held = Decision(
        Outcome.HOLD,
        Reason.DEPLOY_NOT_CONFIGURED,
        decision.risk,
        f"GitHub refused to dispatch {workflow} ({exc.status} {exc.message})"[:300],
    )
    now = ctx.clock()
    ctx.ledger.transition(
        repo.id,
        repo.full_name,
        lambda s: transitions.hold_recorded(
            transitions.intent_abandoned(s, live.sha, live.intent_id, now),
            live.sha,
            held.reason.value,
            None,
            now,
        ),
    )
    log.warning("dispatch refused", extra={"repo": repo.full_name, "sha": live.sha})
    return held


def restore_dispatched(
    ctx: Context,
    repo: Repo,
    live: Dispatch,
    run_id: int | None,
    *,
    trigger: str,
    delivery: str | None,
) -> Evaluation:
    """Post the `success` status of a dispatch that stands, and give the evaluation to
    record, from the decision written with its intent."""
    post_dispatched_status(ctx, repo, live, run_id)
    return Evaluation(
        at=ctx.clock(),
        delivery=delivery,
        trigger=f"{trigger}:restored",
        outcome=Outcome.ALLOW.value,
        reason=live.reason or "dispatched",
        risk=live.risk,
        detail=live.detail or "dispatched before its evaluation could be recorded",
        inputs={"restored": True, "intent_at": live.at.isoformat(), "run_id": run_id},
    )


def _dispatched_since(ctx: Context, repo: Repo, sha: str) -> None:
    """After a HOLD's status: if the SHA was dispatched since the hold was written (an
    approval evaluated it meanwhile), say so again, so the hold is not the last word. The
    dispatch's own status was posted after its intent was written, so it is either later
    than the hold's status or seen here."""
    live = ctx.ledger.read_state(repo.id, repo.full_name).dispatch_for(sha)
    if live is not None:
        post_dispatched_status(ctx, repo, live, live.run_id)


def _decided_so_before(ctx: Context, repo: Repo, sha: str, evaluation: Evaluation) -> bool:
    previous = ctx.ledger.read_decision(repo.id, sha)
    latest = previous.latest if previous is not None else None
    return latest is not None and latest.decides_as(evaluation)


def _hold_after_churn(
    ctx: Context, repo: Repo, sha: str, trusted: Trusted, mode: Mode
) -> Evaluated:
    detail = "the release state changed twice while deciding; it will retry"
    assert isinstance(trusted.policy, Policy)
    fail_closed(ctx, repo, sha, trusted.policy, mode, decision=governor_error(detail))
    return Evaluated(Kind.DECIDED, sha, Outcome.HOLD, Reason.GOVERNOR_ERROR.value)


def fail_closed(
    ctx: Context,
    repo: Repo,
    sha: str,
    policy: Policy,
    mode: Mode,
    *,
    decision: Decision | None = None,
) -> None:
    """Hold a governed SHA after an unexpected error, unless it has a live dispatch."""
    decision = decision or governor_error("the governor failed while evaluating; it will retry")
    now = ctx.clock()
    try:
        after = ctx.ledger.transition(
            repo.id,
            repo.full_name,
            lambda s: (
                s
                if s.dispatch_for(sha) is not None or s.production_sha == sha
                else transitions.hold_recorded(s, sha, decision.reason.value, None, now)
            ),
        )
        if after.holds.get(sha) is None or after.dispatch_for(sha) is not None:
            return  # a dispatch is live: its status stands
        post_status(ctx, repo, sha, decision, policy=policy, mode=mode)
    except Exception:
        log.exception("could not record the fail-closed hold", extra={"sha": sha})


def _not_a_verification(repo: Repo, event: WorkflowRunCompleted) -> str | None:
    run = event.workflow_run
    if run.conclusion != "success":
        return f"run concluded '{run.conclusion}', not success"
    if run.event != "push":
        return f"run was triggered by '{run.event}', not push"
    if run.head_repository is None or run.head_repository.id != repo.id:
        return "run's head repository is not the repository itself (a fork)"
    if run.head_branch != repo.default_branch:
        return f"run is on '{run.head_branch}', not the default branch {repo.default_branch}"
    return None


def _workflow_matches(spec: str, name: str | None, path: str | None) -> bool:
    if spec.endswith((".yml", ".yaml")):
        return path == workflow_path(spec.removeprefix(".github/workflows/"))
    return name == spec
