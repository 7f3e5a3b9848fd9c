"""The flows: a delivery in, effects on GitHub and records on the store out.

Every side effect is guarded by a record written before it (delivery claim, dispatch
intent, run marker), so GitHub's at-least-once deliveries cause each effect at most
once. What governs a decision is the trusted policy (the one in production, or the
default branch's before any deploy); the SHA's own policy can only add restrictions
(`governor.gate`). The decision is made again inside the conditional write that commits
it, on the state actually written. Anything unexpected on a governed SHA ends in a HOLD
(`governor_error`), never in an ALLOW, and never over a live dispatch.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal, Protocol
from urllib.parse import urlencode

from governor import messages
from governor import state as transitions
from governor.config import (
    POLICY_PATH,
    ApprovalMode,
    AppSettings,
    Mode,
    Policy,
    PolicyProblem,
    parse_policy,
)
from governor.deploy_runs import RunInfo, find_dispatched_run, is_dispatched_run, workflow_path
from governor.events import (
    Delivery,
    DeploymentProtectionRuleRequested,
    Event,
    Ignored,
    IssueCommentCreated,
    PullRequestLabeled,
    WorkflowRunCompleted,
    classify,
    identity,
)
from governor.gate import Facts, StaleFacts, Verdict, bases_needed, judge
from governor.github.api import RepoApi
from governor.github.client import OutcomeUnknown, RateLimited
from governor.ledger import ClaimStatus, Evaluation, Ledger
from governor.policy import Decision, Outcome, Reason, governor_error
from governor.risk import Comparison
from governor.state import Approval, Dispatch, RejectedRun, ReleaseState
from governor.store import StoreError, WriteContention
from governor.store.envelope import new_token

log = logging.getLogger("governor.service")

DEPLOY_FAILURES: Final = frozenset({"failure", "timed_out", "startup_failure"})
FAILURE_LABELS: Final = ("deploy-failure", "severity:high")
Trusted = tuple[Policy | PolicyProblem | None, str]
"""The trusted policy and where it was read."""


class GitHubPort(Protocol):
    def repo(self, installation_id: int, full_name: str) -> RepoApi: ...

    def bot_login(self) -> str:
        """The App's own bot user (`<slug>[bot]`): the triggering actor of its dispatches."""
        ...


@dataclass(frozen=True, slots=True)
class Answer:
    """What the webhook function answers GitHub."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Repo:
    """The repository an event is about, and how to reach it."""

    id: int
    full_name: str
    default_branch: str
    installation_id: int
    api: RepoApi

    @property
    def default_ref(self) -> str:
        return f"refs/heads/{self.default_branch}"


@dataclass(slots=True)
class _Committed:
    """What the conditional write that commits a decision saw and did (filled in by it)."""

    verdict: Verdict | None = None
    state: ReleaseState | None = None
    result: str = "decided"
    extra: dict[str, Any] = field(default_factory=dict)


class Governor:
    def __init__(
        self,
        settings: AppSettings,
        ledger: Ledger,
        github: GitHubPort,
        clock: Callable[[], datetime],
        *,
        lease: timedelta = timedelta(seconds=120),
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.github = github
        self.clock = clock
        self.lease = lease

    # -- entry --------------------------------------------------------------------------

    def handle(self, delivery: Delivery) -> Answer:
        event = classify(delivery)
        if isinstance(event, Ignored):
            return Answer(200, {"result": "ignored", "why": event.why})
        if not event.repository.default_branch:
            return Answer(200, {"result": "ignored", "why": "the payload names no default branch"})
        key = identity(event)
        claim = self.ledger.claim_delivery(
            key, delivery.event, self.clock(), self.lease, guid=delivery.guid
        )
        if claim.status is ClaimStatus.DONE:
            return Answer(200, {"result": "duplicate", "outcome": claim.outcome})
        if claim.status is ClaimStatus.IN_PROGRESS:
            return Answer(202, {"result": "in_progress", "until": claim.lease_until.isoformat()})
        try:
            outcome = self._route(event, delivery.guid)
        except Exception:
            self._release(key, claim.owner)  # the redelivery (or reconcile) redoes it
            raise
        self.ledger.finish_delivery(key, outcome, self.clock())
        status = 200 if outcome.get("result") == "ignored" else 202
        return Answer(status, outcome)

    def _route(self, event: Event, guid: str) -> dict[str, Any]:
        repo = self._repo(event)
        if isinstance(event, WorkflowRunCompleted):
            if event.workflow_run.event == "workflow_dispatch":
                return self.on_deploy_completed(repo, event)
            return self.on_verification(repo, event, guid)
        if isinstance(event, PullRequestLabeled):
            return self.on_label(repo, event, guid)
        if isinstance(event, DeploymentProtectionRuleRequested):
            return self.on_protection_rule(repo, event)
        return self.on_comment(repo, event, guid)

    def _repo(self, event: Event) -> Repo:
        full_name = event.repository.full_name
        assert event.repository.default_branch  # handle() answered payloads without one
        return Repo(
            id=event.repository.id,
            full_name=full_name,
            default_branch=event.repository.default_branch,
            installation_id=event.installation.id,
            api=self.github.repo(event.installation.id, full_name),
        )

    def _release(self, key: str, owner: str) -> None:
        try:
            self.ledger.release_delivery(key, owner, self.clock())
        except StoreError:
            log.warning("could not release the claim; it expires by itself", extra={"claim": key})

    # -- the trusted policy -------------------------------------------------------------

    def trusted_policy(self, repo: Repo, state: ReleaseState) -> Trusted:
        """The policy in production; before any deploy, or if production's cannot govern
        (missing, invalid, disabled, or naming no deploy workflow), the default branch's:
        a repository must be able to opt in again or mend its policy without a deploy."""
        if state.production_sha is not None:
            policy = parse_policy(repo.api.file_text(POLICY_PATH, state.production_sha))
            if isinstance(policy, Policy) and policy.enabled and policy.deploy_workflow:
                return policy, f"production {state.production_sha}"
        return parse_policy(repo.api.file_text(POLICY_PATH, repo.default_ref)), repo.default_ref

    # -- verification succeeded ---------------------------------------------------------

    def on_verification(self, repo: Repo, event: WorkflowRunCompleted, guid: str) -> dict[str, Any]:
        run = event.workflow_run
        not_ours = _why_not_verification(repo, event)
        if not_ours:
            return {"result": "ignored", "why": not_ours}
        state = self.ledger.read_state(repo.id, repo.full_name)
        trusted = self.trusted_policy(repo, state)
        policy = trusted[0]
        if policy is None or (isinstance(policy, Policy) and not policy.enabled):
            return {"result": "ignored", "why": f"{repo.full_name} is not governed ({trusted[1]})"}
        if isinstance(policy, Policy) and not _workflow_matches(
            policy.verification_workflow, run.name, run.path
        ):
            return {
                "result": "ignored",
                "why": f"workflow '{run.name}' is not '{policy.verification_workflow}'",
            }
        return self.evaluate(
            repo, run.head_sha, trigger="verified", delivery=guid, state=state, trusted=trusted
        )

    def evaluate(
        self,
        repo: Repo,
        sha: str,
        *,
        trigger: str,
        delivery: str | None,
        state: ReleaseState | None = None,
        trusted: Trusted | None = None,
    ) -> dict[str, Any]:
        """Decide for `sha` and act on the decision; safe to repeat."""
        state = state or self.ledger.read_state(repo.id, repo.full_name)
        if state.production_sha == sha:
            return {"result": "in_production", "sha": sha}
        trusted = trusted or self.trusted_policy(repo, state)
        policy = trusted[0]
        live = state.dispatch_for(sha)
        stale: str | None = None
        if live is not None:
            unfinished = self._resume_dispatch(repo, sha, policy, live)
            if unfinished is not None:
                return unfinished
            stale = live.intent_id  # it never started: decide again, as if never dispatched
        if policy is None or (isinstance(policy, Policy) and not policy.enabled):
            return {"result": "ignored", "why": f"{repo.full_name} is not governed"}
        mode = _mode(policy, self.settings)
        try:
            reachable = repo.api.compare(repo.default_ref, sha)
            if not reachable.head_is_ancestor:
                return {
                    "result": "ignored",
                    "why": f"{sha} is not on {repo.default_ref} ({reachable.status})",
                }
            return self._decide_and_act(
                repo,
                sha,
                trusted,
                state,
                mode,
                trigger=trigger,
                delivery=delivery,
                stale_intent=stale,
            )
        except (WriteContention, RateLimited):
            raise  # transient: nothing decided, the redelivery decides
        except Exception:
            if isinstance(policy, Policy):
                self._fail_closed(repo, sha, policy, mode)
            raise

    def _decide_and_act(
        self,
        repo: Repo,
        sha: str,
        trusted: Trusted,
        state: ReleaseState,
        mode: Mode,
        *,
        trigger: str,
        delivery: str | None,
        stale_intent: str | None = None,
    ) -> dict[str, Any]:
        intent = new_token()
        facts = self._gather(repo, sha, trusted, state)
        try:
            committed = self._commit(repo, facts, mode, intent, stale_intent)
        except StaleFacts as stale:
            # The state moved on (another instance, another SHA): gather once more on it.
            fresh = self.ledger.read_state(repo.id, repo.full_name)
            if fresh.production_sha != state.production_sha:
                trusted = self.trusted_policy(repo, fresh)
            facts = self._gather(repo, sha, trusted, fresh)
            try:
                committed = self._commit(repo, facts, mode, intent, stale_intent)
            except StaleFacts as again:
                log.warning("state changed twice while deciding: %s; %s", stale, again)
                return self._hold_after_churn(repo, sha, trusted[0], mode)
        if committed.verdict is None:
            return {"result": committed.result, "sha": sha, **committed.extra}
        verdict, decision = committed.verdict, committed.verdict.decision
        result: dict[str, Any] = {
            "result": "decided",
            "decision": decision.outcome.value,
            "reason": decision.reason.value,
            "sha": sha,
        }
        if decision.outcome is Outcome.IGNORE:
            return {"result": "ignored", "why": decision.detail}
        policy = trusted[0]
        if decision.allowed and mode is Mode.ENFORCE:
            assert committed.state is not None and isinstance(policy, Policy)
            live = committed.state.dispatch_for(sha)
            if live is None or live.intent_id != intent:
                return {**result, "dispatch": "another instance is dispatching"}
            result["dispatch"] = self._send_dispatch(repo, sha, live)
            if stale_intent is not None:
                result["result"] = "redispatched"
        self._post_status(repo, sha, decision, policy, mode)
        self.ledger.record_evaluation(
            repo.id,
            repo.full_name,
            sha,
            Evaluation(
                at=facts.now,
                delivery=delivery,
                trigger=trigger,
                outcome=decision.outcome.value,
                reason=decision.reason.value,
                risk=decision.risk.value if decision.risk else None,
                detail=decision.detail,
                until=decision.until,
                inputs=verdict.summary(facts),
            ),
        )
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
        return result

    def _gather(self, repo: Repo, sha: str, trusted: Trusted, state: ReleaseState) -> Facts:
        """Every GitHub input of the decision for `sha` on `state`."""
        policy, source = trusted
        own = parse_policy(repo.api.file_text(POLICY_PATH, sha))
        comparisons = {base: repo.api.compare(base, sha) for base in bases_needed(state, sha)}
        own_change: Comparison | None = None
        if state.production_sha is None:
            own_change = repo.api.commit_change(sha)
        labels = {
            p.degraded.issue_label
            for p in (policy, own)
            if isinstance(p, Policy) and p.degraded.issue_label is not None
        }
        degraded = frozenset(
            label for label in sorted(labels) if repo.api.open_issues_with_label(label)
        )
        return Facts(
            sha=sha,
            production_sha=state.production_sha,
            trusted=policy,
            trusted_source=source,
            own=own,
            comparisons=comparisons,
            own_change=own_change,
            degraded_labels=degraded,
            now=self.clock(),
        )

    def _commit(
        self, repo: Repo, facts: Facts, mode: Mode, intent: str, stale: str | None = None
    ) -> _Committed:
        """Decide again on the state being replaced, and write the decision in the same CAS.

        `stale`: a run-less intent of this SHA that never started a run; it is judged as if
        it had never been written, and replaced (or dropped) in the same write.
        """
        sha, now = facts.sha, facts.now
        policy = facts.trusted
        committed = _Committed()

        def decide_on(state: ReleaseState) -> ReleaseState:
            committed.verdict, committed.result, committed.extra = None, "decided", {}
            if state.production_sha == sha:
                committed.result = "in_production"
                return state
            if stale is not None:
                state = transitions.intent_abandoned(state, sha, stale, now)
            live = state.dispatch_for(sha)
            if live is not None:
                committed.result = "already_dispatched"
                committed.extra = {"run_id": live.run_id}
                return state
            verdict = judge(facts, state)
            committed.verdict = verdict
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
                )
            if decision.reason is Reason.SUPERSEDED:
                return transitions.superseded(state, sha, now)
            if decision.outcome is Outcome.HOLD:
                return transitions.hold_recorded(
                    state, sha, decision.reason.value, decision.until, now
                )
            return state

        committed.state = self.ledger.transition(repo.id, repo.full_name, decide_on)
        return committed

    def _hold_after_churn(
        self, repo: Repo, sha: str, policy: Policy | PolicyProblem | None, mode: Mode
    ) -> dict[str, Any]:
        detail = "the release state changed twice while deciding; it will retry"
        assert isinstance(policy, Policy)
        self._fail_closed(repo, sha, policy, mode, governor_error(detail))
        return {
            "result": "decided",
            "decision": Outcome.HOLD.value,
            "reason": Reason.GOVERNOR_ERROR.value,
            "sha": sha,
        }

    def _fail_closed(
        self, repo: Repo, sha: str, policy: Policy, mode: Mode, decision: Decision | None = None
    ) -> None:
        """Hold a governed SHA after an unexpected error, unless it has a live dispatch."""
        decision = decision or governor_error("the governor failed while evaluating; it will retry")
        now = self.clock()
        try:
            after = self.ledger.transition(
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
            self._post_status(repo, sha, decision, policy, mode)
        except Exception:
            log.exception("could not record the fail-closed hold", extra={"sha": sha})

    # -- dispatch -------------------------------------------------------------------------

    def _target(self, repo: Repo, dispatch: Dispatch, policy: Policy | None) -> tuple[str, str]:
        """The workflow and branch of a dispatch: as recorded, else the trusted policy's."""
        workflow = dispatch.workflow or (policy.deploy_workflow if policy else None)
        ref = dispatch.ref or (policy.deploy_ref if policy else None) or repo.default_branch
        if workflow is None:
            raise LookupError(f"no deploy workflow known for the dispatch of {dispatch.sha}")
        return workflow, ref

    def _resume_dispatch(
        self, repo: Repo, sha: str, policy: Policy | PolicyProblem | None, live: Dispatch
    ) -> dict[str, Any] | None:
        """`sha` has a dispatch already: the answer if it stands, None if it never started.

        A run-less intent older than the lease whose run cannot be found never reached
        GitHub (or died there): the caller decides again on the fresh state, so a retry
        obeys the rate limit and supersession like any dispatch.
        """
        done = {"result": "already_dispatched", "sha": sha, "run_id": live.run_id}
        trusted = policy if isinstance(policy, Policy) else None
        if live.run_id is not None or (live.workflow is None and trusted is None):
            return done
        if self.clock() - live.at < self.lease:
            return {**done, "result": "dispatch_in_progress"}
        run = self._find_run(repo, live, trusted)
        if run is not None:
            self._record_run(repo, sha, live.intent_id, run.id, run.html_url)
            return {**done, "run_id": run.id, "result": "dispatch_recovered"}
        return None

    def _send_dispatch(
        self, repo: Repo, sha: str, live: Dispatch, policy: Policy | None = None
    ) -> str:
        workflow, branch = self._target(repo, live, policy)
        ref = f"refs/heads/{branch}"
        try:
            result = repo.api.dispatch(workflow, ref, {"sha": sha})
        except OutcomeUnknown:
            # The dispatch may have happened: look for its run before trying once more.
            # If that second try is unclear too, the error ends this delivery; whoever
            # finds the intent later looks for the run again before dispatching.
            run = self._find_run(repo, live, policy)
            if run is not None:
                self._record_run(repo, sha, live.intent_id, run.id, run.html_url)
                return f"dispatched, run {run.id} found after an unclear answer"
            result = repo.api.dispatch(workflow, ref, {"sha": sha})
        run_id, run_url = result.run_id, result.html_url
        if run_id is None:  # an older GitHub answers 204 without the run
            found = self._find_run(repo, live, policy)
            run_id, run_url = (found.id, found.html_url) if found else (None, None)
        if run_id is not None:
            self._record_run(repo, sha, live.intent_id, run_id, run_url)
        return f"dispatched run {run_id}" if run_id else "dispatched"

    def _find_run(self, repo: Repo, dispatch: Dispatch, policy: Policy | None) -> RunInfo | None:
        """The deploy run of `dispatch`, provably the governor's (see governor.deploy_runs)."""
        workflow, ref = self._target(repo, dispatch, policy)
        listed = repo.api.workflow_runs(workflow, event="workflow_dispatch", branch=ref)
        return find_dispatched_run(
            (RunInfo.from_json(run) for run in listed),
            dispatch,
            workflow=workflow,
            ref=ref,
            bot_login=self.github.bot_login(),
        )

    def _record_run(
        self, repo: Repo, sha: str, intent_id: str, run_id: int, run_url: str | None
    ) -> None:
        now = self.clock()
        self.ledger.transition(
            repo.id,
            repo.full_name,
            lambda s: transitions.record_run(
                s, sha, intent_id=intent_id, run_id=run_id, run_url=run_url, now=now
            ),
        )

    def _dispatch_of(
        self, repo: Repo, run: RunInfo, state: ReleaseState
    ) -> tuple[Dispatch, str] | None:
        """The dispatch `run` is the deploy of, and its workflow; None if it is not one."""
        recorded = state.dispatch_of_run(run.id)
        candidates = [recorded] if recorded else [d for d in state.dispatches if d.run_id is None]
        if not candidates:
            return None
        trusted: Policy | None = None
        if any(d.workflow is None for d in candidates):  # recorded before schema 2
            policy = self.trusted_policy(repo, state)[0]
            trusted = policy if isinstance(policy, Policy) else None
        bot = self.github.bot_login()
        for dispatch in reversed(candidates):
            if dispatch.workflow is None and trusted is None:
                continue
            workflow, ref = self._target(repo, dispatch, trusted)
            if is_dispatched_run(run, dispatch, workflow=workflow, ref=ref, bot_login=bot):
                return dispatch, workflow
        return None

    # -- deploy completed -----------------------------------------------------------------

    def on_deploy_completed(  # noqa: PLR0911  (one return per outcome)
        self, repo: Repo, event: WorkflowRunCompleted
    ) -> dict[str, Any]:
        run = RunInfo.from_json(event.workflow_run.model_dump())
        if run.status not in (None, "completed"):
            return {"result": "ignored", "why": f"deploy run {run.id} is {run.status}"}
        state = self.ledger.read_state(repo.id, repo.full_name)
        found = self._dispatch_of(repo, run, state)
        if found is None:
            return {
                "result": "ignored",
                "why": f"run {run.id} is not a deploy the governor started",
            }
        dispatch = found[0]
        rejected = state.rejected(run.id, run.attempt)
        if rejected is not None:
            return {
                "result": "ignored",
                "why": f"run {run.id} attempt {run.attempt} was rejected by the governor "
                f"({rejected.reason}): not a deploy outcome",
            }
        sha, conclusion = dispatch.sha, run.conclusion or "unknown"
        summary = {"sha": sha, "conclusion": conclusion, "run_id": run.id}
        if not self.ledger.mark_run_processed(repo.id, run.id, run.attempt, summary):
            return {"result": "duplicate_run", **summary}
        if dispatch.run_id is None:
            self._record_run(repo, sha, dispatch.intent_id, run.id, run.html_url)
        now = self.clock()
        if conclusion == "success":
            self.ledger.transition(
                repo.id, repo.full_name, lambda s: transitions.deploy_succeeded(s, sha, now)
            )
            return {"result": "deployed", **summary}
        if conclusion not in DEPLOY_FAILURES:
            return {"result": "deploy_not_failed", **summary}
        append_to = state.failure_issue_to_append(sha, now)
        self.ledger.transition(
            repo.id, repo.full_name, lambda s: transitions.deploy_failed(s, sha, conclusion, now)
        )
        if append_to is not None:
            repo.api.create_comment(
                append_to, messages.failure_comment(sha, conclusion, run.html_url)
            )
            return {"result": "deploy_failed", "issue": append_to, "appended": True, **summary}
        number = repo.api.create_issue(
            messages.failure_issue_title(sha),
            messages.failure_issue_body(sha, repo.full_name, conclusion, run.html_url),
            [*FAILURE_LABELS, f"failure:{conclusion}"],
        )
        self.ledger.transition(
            repo.id, repo.full_name, lambda s: transitions.failure_issue_opened(s, sha, number, now)
        )
        return {"result": "deploy_failed", "issue": number, "appended": False, **summary}

    # -- deployment protection rule -------------------------------------------------------

    def on_protection_rule(
        self, repo: Repo, event: DeploymentProtectionRuleRequested
    ) -> dict[str, Any]:
        """Approve only the governor's own, current deploy run; reject everything else."""
        run_id = event.run_id()
        assert run_id is not None  # classify() ignores callbacks that name no run here
        run = RunInfo.from_json(repo.api.run(run_id))
        state = self.ledger.read_state(repo.id, repo.full_name)
        found = self._dispatch_of(repo, run, state)
        dispatch = found[0] if found else None
        if dispatch is not None and dispatch.run_id is None:
            self._record_run(repo, dispatch.sha, dispatch.intent_id, run.id, run.html_url)
            state = self.ledger.read_state(repo.id, repo.full_name)
            dispatch = state.dispatch_of_run(run.id)
        review = self._review(repo, run, dispatch, state)
        comment = review.comment()
        if not review.approved and dispatch is not None:
            now = self.clock()
            rejected = RejectedRun(
                run_id=run.id,
                attempt=run.attempt,
                sha=dispatch.sha,
                reason=review.reason,
                at=now,
            )
            self.ledger.transition(
                repo.id, repo.full_name, lambda s: transitions.run_rejected(s, rejected, now)
            )
        repo.api.review_protection_rule(
            run.id, environment=event.environment, approved=review.approved, comment=comment
        )
        log.info(
            "protection rule answered",
            extra={"repo": repo.full_name, "run": run.id, "decision": review.reason},
        )
        return {
            "result": "approved" if review.approved else "rejected",
            "run_id": run.id,
            "attempt": run.attempt,
            "sha": dispatch.sha if dispatch else None,
            "reason": review.reason,
            "comment": comment,
        }

    def _review(
        self, repo: Repo, run: RunInfo, dispatch: Dispatch | None, state: ReleaseState
    ) -> _Review:
        if dispatch is None:
            return _Review(
                False,
                Reason.NOT_GOVERNOR_RUN.value,
                f"run {run.id} was not started by the governor",
                messages.NOT_GOVERNOR_RUN_HINT,
            )
        newest = state.dispatches[-1] if state.dispatches else None
        if newest is not None and newest.sha != dispatch.sha:
            return _Review(
                False,
                Reason.SUPERSEDED.value,
                f"{newest.sha[:7]} was dispatched after {dispatch.sha[:7]}",
                "a newer SHA ships instead; nothing to do",
            )
        if run.attempt == 1 and state.dispatch_for(dispatch.sha) == dispatch:
            return _Review(True, "approved", f"the governor's deploy of {dispatch.sha}", "")
        if state.production_sha == dispatch.sha:
            return _Review(True, "approved", f"{dispatch.sha} is already in production", "")
        # A re-run attempt (or a run whose deploy failed): only if the SHA passes the gate now.
        without_it = state.model_copy(
            update={"dispatches": tuple(d for d in state.dispatches if d != dispatch)}
        )
        trusted = self.trusted_policy(repo, state)
        facts = self._gather(repo, dispatch.sha, trusted, without_it)
        decision = judge(facts, without_it).decision
        if decision.allowed:
            return _Review(True, "approved", f"re-run of {dispatch.sha}: {decision.detail}", "")
        policy = trusted[0]
        return _Review(
            False,
            decision.reason.value,
            decision.detail,
            messages.unblock_hint(decision, policy),
        )

    # -- approvals --------------------------------------------------------------------------

    def on_label(self, repo: Repo, event: PullRequestLabeled, guid: str) -> dict[str, Any]:
        state = self.ledger.read_state(repo.id, repo.full_name)
        policy = self.trusted_policy(repo, state)[0]
        if not isinstance(policy, Policy) or policy.approval.mode is ApprovalMode.COMMENT:
            return {"result": "ignored", "why": "labels are not how this repository approves"}
        if event.label.name != policy.approval.label:
            return {"result": "ignored", "why": f"label '{event.label.name}' is not an approval"}
        pull = event.pull_request
        request = _Request(
            pull.number, pull.user.login, event.sender.login, "label", pull.merge_commit_sha
        )
        return self._approve(repo, policy, request, guid, state)

    def on_comment(self, repo: Repo, event: IssueCommentCreated, guid: str) -> dict[str, Any]:
        if event.issue.pull_request is None:
            return {"result": "ignored", "why": "comment is not on a pull request"}
        words = event.comment.body.split()
        if not words or not words[0].startswith("/"):
            return {"result": "ignored", "why": "comment is not a command"}
        state = self.ledger.read_state(repo.id, repo.full_name)
        policy = self.trusted_policy(repo, state)[0]
        if not isinstance(policy, Policy) or policy.approval.mode is ApprovalMode.LABEL:
            return {"result": "ignored", "why": "comments are not how this repository approves"}
        if words[0] != policy.approval.command:
            return {"result": "ignored", "why": f"'{words[0]}' is not the approval command"}
        request = _Request(
            event.issue.number, event.issue.user.login, event.comment.user.login, "comment", None
        )
        return self._approve(repo, policy, request, guid, state)

    def _approve(
        self, repo: Repo, policy: Policy, request: _Request, guid: str, state: ReleaseState
    ) -> dict[str, Any]:
        """Record an approval allowed by the trusted rules, then evaluate the SHA again."""
        pull_number, author, approver = request.pull_number, request.author, request.approver
        if approver == author and not policy.approval.allow_author:
            return {
                "result": "ignored",
                "why": f"{approver} wrote the pull request and may not approve it",
            }
        permission = repo.api.permission(approver)
        needed = policy.approval.min_permission
        if permission is None or permission.rank < needed.rank:
            return {
                "result": "ignored",
                "why": f"{approver} has {permission or 'no'} permission, needs {needed}",
            }
        held = [sha for sha in state.holds if sha == request.merge_commit_sha] or [
            sha
            for sha in state.holds
            if any(p.get("number") == pull_number for p in repo.api.pulls_for_commit(sha))
        ]
        if not held:
            return {
                "result": "ignored",
                "why": f"no held SHA belongs to pull request #{pull_number}",
            }
        results = {}
        for sha in held:
            now = self.clock()
            approval = Approval(sha=sha, by=approver, at=now, via=request.via)
            self.ledger.transition(repo.id, repo.full_name, _approval_recorded(approval, now))
            results[sha] = self.evaluate(
                repo, sha, trigger=f"approval:{request.via}", delivery=guid
            )
        return {"result": "approved", "by": approver, "evaluations": results}

    # -- status ------------------------------------------------------------------------------

    def _post_status(
        self,
        repo: Repo,
        sha: str,
        decision: Decision,
        policy: Policy | PolicyProblem | None,
        mode: Mode,
    ) -> None:
        state, description = messages.commit_status(decision, policy, mode)
        repo.api.create_status(
            sha,
            state=state,
            context=self.settings.status_context,
            description=description,
            target_url=self.decision_link(repo.id, sha),
        )

    def decision_link(self, repo_id: int, sha: str) -> str | None:
        """A signed link to the decision page; unsigned access is refused there."""
        if not self.settings.public_url or self.settings.link_secret is None:
            return None
        signature = link_signature(self.settings.link_secret.get_secret_value(), repo_id, sha)
        query = urlencode({"repo": repo_id, "sha": sha, "sig": signature})
        return f"{self.settings.public_url.rstrip('/')}/?{query}"


@dataclass(frozen=True, slots=True)
class _Request:
    """An approval as asked for: on which pull request, by whom, through which route."""

    pull_number: int
    author: str
    approver: str
    via: Literal["label", "comment"]
    merge_commit_sha: str | None


@dataclass(frozen=True, slots=True)
class _Review:
    """The answer to a deployment protection rule request."""

    approved: bool
    reason: str
    detail: str
    hint: str

    def comment(self) -> str:
        text = f"{self.reason}: {self.detail}"
        return f"{text}. {self.hint}" if self.hint else text


def _approval_recorded(approval: Approval, now: datetime) -> Callable[[ReleaseState], ReleaseState]:
    return lambda state: transitions.approval_recorded(state, approval, now)


def link_signature(secret: str, repo_id: int, sha: str) -> str:
    return hmac.new(secret.encode(), f"{repo_id}:{sha}".encode(), hashlib.sha256).hexdigest()[:32]


def _why_not_verification(repo: Repo, event: WorkflowRunCompleted) -> str | None:
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


def _mode(policy: Policy | PolicyProblem | None, settings: AppSettings) -> Mode:
    if isinstance(policy, Policy) and policy.mode is not None:
        return policy.mode
    return settings.mode
