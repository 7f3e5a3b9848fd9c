"""The flows: a delivery in, effects on GitHub and records on the store out.

Every side effect is guarded by a record written before it (delivery claim, dispatch
intent, run marker), so GitHub's at-least-once deliveries cause each effect at most
once, and anything unexpected ends in a HOLD (`governor_error`), never in an ALLOW.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
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
from governor.events import (
    Delivery,
    Event,
    Ignored,
    IssueCommentCreated,
    PullRequestLabeled,
    WorkflowRunCompleted,
    classify,
)
from governor.github.api import RepoApi
from governor.github.client import OutcomeUnknown, RateLimited
from governor.ledger import ClaimStatus, Evaluation, Ledger
from governor.policy import Decision, DecisionInputs, Outcome, Reason, decide, governor_error
from governor.risk import Risk, RiskAssessment, assess
from governor.state import Approval, Dispatch, ReleaseState
from governor.store import StoreError, WriteContention
from governor.store.envelope import new_token

log = logging.getLogger("governor.service")

DEPLOY_FAILURES: Final = frozenset({"failure", "timed_out", "startup_failure"})
FAILURE_LABELS: Final = ("deploy-failure", "severity:high")


class GitHubPort(Protocol):
    def repo(self, installation_id: int, full_name: str) -> RepoApi: ...


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
        claim = self.ledger.claim_delivery(delivery.guid, delivery.event, self.clock(), self.lease)
        if claim.status is ClaimStatus.DONE:
            return Answer(200, {"result": "duplicate", "outcome": claim.outcome})
        if claim.status is ClaimStatus.IN_PROGRESS:
            return Answer(202, {"result": "in_progress", "until": claim.lease_until.isoformat()})
        try:
            outcome = self._route(event, delivery.guid)
        except (WriteContention, RateLimited):
            self._release(delivery.guid, claim.owner)  # transient: the redelivery redoes it
            raise
        except Exception:
            self._release(delivery.guid, claim.owner)
            self._fail_closed(event, delivery.guid)
            raise
        self.ledger.finish_delivery(delivery.guid, outcome, self.clock())
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
        return self.on_comment(repo, event, guid)

    def _repo(self, event: Event) -> Repo:
        full_name = event.repository.full_name
        return Repo(
            id=event.repository.id,
            full_name=full_name,
            default_branch=event.repository.default_branch or "main",
            installation_id=event.installation.id,
            api=self.github.repo(event.installation.id, full_name),
        )

    def _release(self, guid: str, owner: str) -> None:
        try:
            self.ledger.release_delivery(guid, owner, self.clock())
        except StoreError:
            log.warning(
                "could not release the claim; it expires by itself", extra={"delivery": guid}
            )

    def _fail_closed(self, event: Event, guid: str) -> None:
        """An unexpected error on a verified SHA leaves a HOLD that reconcile retries."""
        if not isinstance(event, WorkflowRunCompleted):
            return
        run = event.workflow_run
        on_default_branch = run.head_branch == (event.repository.default_branch or "main")
        if run.event != "push" or run.conclusion != "success" or not on_default_branch:
            return  # not a SHA the governor would have evaluated: nothing to hold
        sha = run.head_sha
        try:
            repo = self._repo(event)
            decision = governor_error("the governor failed while evaluating; it will retry")
            now = self.clock()
            self.ledger.transition(
                repo.id,
                repo.full_name,
                lambda s: transitions.hold_recorded(s, sha, decision.reason.value, None, now),
            )
            self._post_status(repo, sha, decision, None, Mode.ENFORCE)
        except Exception:
            log.exception(
                "could not record the fail-closed hold", extra={"sha": sha, "delivery": guid}
            )

    # -- verification succeeded ---------------------------------------------------------

    def on_verification(self, repo: Repo, event: WorkflowRunCompleted, guid: str) -> dict[str, Any]:
        run = event.workflow_run
        not_ours = _why_not_verification(repo, event)
        if not_ours:
            return {"result": "ignored", "why": not_ours}
        policy = parse_policy(repo.api.file_text(POLICY_PATH, run.head_sha))
        if policy is None:
            return {"result": "ignored", "why": f"{repo.full_name} has no {POLICY_PATH}"}
        if isinstance(policy, Policy):
            branch = policy.default_branch or repo.default_branch
            if run.head_branch != branch:
                return {"result": "ignored", "why": f"branch {run.head_branch} is not {branch}"}
            if not _workflow_matches(policy.verification_workflow, run.name, run.path):
                return {
                    "result": "ignored",
                    "why": f"workflow '{run.name}' is not '{policy.verification_workflow}'",
                }
        return self.evaluate(repo, run.head_sha, policy, trigger="verified", delivery=guid)

    def evaluate(
        self,
        repo: Repo,
        sha: str,
        policy: Policy | PolicyProblem | None,
        *,
        trigger: str,
        delivery: str | None,
    ) -> dict[str, Any]:
        """Decide for `sha` and act on the decision; safe to repeat."""
        state = self.ledger.read_state(repo.id, repo.full_name)
        if state.production_sha == sha:
            return {"result": "in_production", "sha": sha}
        live = state.dispatch_for(sha)
        if live is not None:
            return self._resume_dispatch(repo, sha, policy, live)
        inputs = self._inputs(repo, sha, policy, state)
        decision = decide(inputs)
        if decision.outcome is Outcome.IGNORE:
            return {"result": "ignored", "why": decision.detail}
        mode = _mode(policy, self.settings)
        now = self.clock()
        result: dict[str, Any] = {
            "result": "decided",
            "decision": decision.outcome.value,
            "reason": decision.reason.value,
            "sha": sha,
        }
        if decision.allowed and mode is Mode.ENFORCE:
            assert isinstance(policy, Policy)
            result["dispatch"] = self._dispatch(repo, sha, policy)
            if result["dispatch"] == "another instance is dispatching":
                return result
        elif decision.reason is Reason.SUPERSEDED:
            self.ledger.transition(
                repo.id, repo.full_name, lambda s: transitions.superseded(s, sha, now)
            )
        elif decision.outcome is Outcome.HOLD:
            self.ledger.transition(
                repo.id,
                repo.full_name,
                lambda s: transitions.hold_recorded(
                    s, sha, decision.reason.value, decision.until, now
                ),
            )
        self._post_status(repo, sha, decision, policy, mode)
        self.ledger.record_evaluation(
            repo.id,
            repo.full_name,
            sha,
            Evaluation(
                at=now,
                delivery=delivery,
                trigger=trigger,
                outcome=decision.outcome.value,
                reason=decision.reason.value,
                risk=decision.risk.value if decision.risk else None,
                detail=decision.detail,
                until=decision.until,
                inputs=_summary(inputs),
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

    def _inputs(
        self, repo: Repo, sha: str, policy: Policy | PolicyProblem | None, state: ReleaseState
    ) -> DecisionInputs:
        now = self.clock()
        no_risk = RiskAssessment(level=Risk.HIGH, notes=("not assessed",))
        if not isinstance(policy, Policy) or not policy.enabled or policy.deploy_workflow is None:
            return DecisionInputs(sha, policy, state, no_risk, False, (), now)
        superseded_by = None
        if state.production_sha is None:
            risk = RiskAssessment(level=Risk.HIGH, notes=("first deploy: nothing to compare with",))
        else:
            comparison = repo.api.compare(state.production_sha, sha)
            if comparison.status == "behind":
                superseded_by = state.production_sha
            risk = assess(policy, comparison.files, complete=comparison.complete)
        newest = _newest_other_dispatch(state, sha)
        if (
            superseded_by is None
            and newest is not None
            and repo.api.compare(newest.sha, sha).status in ("behind", "identical")
        ):
            superseded_by = newest.sha
        degraded = policy.degraded.manual or bool(
            policy.degraded.issue_label
            and repo.api.open_issues_with_label(policy.degraded.issue_label)
        )
        return DecisionInputs(
            sha, policy, state, risk, degraded, state.approvals_for(sha), now, superseded_by
        )

    # -- dispatch -------------------------------------------------------------------------

    def _dispatch(self, repo: Repo, sha: str, policy: Policy) -> str:
        intent = new_token()
        now = self.clock()
        after = self.ledger.transition(
            repo.id, repo.full_name, lambda s: transitions.record_intent(s, sha, intent, now)
        )
        live = after.dispatch_for(sha)
        if live is None or live.intent_id != intent:
            return "another instance is dispatching"
        return self._send_dispatch(repo, sha, policy, live)

    def _resume_dispatch(
        self, repo: Repo, sha: str, policy: Policy | PolicyProblem | None, live: Dispatch
    ) -> dict[str, Any]:
        """`sha` has a dispatch already: finish it if it was left half done, else stop."""
        done = {"result": "already_dispatched", "sha": sha, "run_id": live.run_id}
        if live.run_id is not None or not isinstance(policy, Policy):
            return done
        if self.clock() - live.at < self.lease:
            return {**done, "result": "dispatch_in_progress"}
        assert policy.deploy_workflow is not None
        run = self._find_run(repo, policy, sha, live.at)
        if run is not None:
            self._record_run(repo, sha, live.intent_id, int(run["id"]), run.get("html_url"))
            return {**done, "run_id": int(run["id"]), "result": "dispatch_recovered"}
        intent, now = new_token(), self.clock()
        after = self.ledger.transition(
            repo.id,
            repo.full_name,
            lambda s: transitions.retry_intent(
                s, sha, stale_intent_id=live.intent_id, intent_id=intent, now=now
            ),
        )
        retried = after.dispatch_for(sha)
        if retried is None or retried.intent_id != intent:
            return {**done, "result": "dispatch_in_progress"}
        return {
            **done,
            "result": "redispatched",
            "dispatch": self._send_dispatch(repo, sha, policy, retried),
        }

    def _send_dispatch(self, repo: Repo, sha: str, policy: Policy, live: Dispatch) -> str:
        assert policy.deploy_workflow is not None
        ref = policy.deploy_ref or policy.default_branch or repo.default_branch
        try:
            result = repo.api.dispatch(policy.deploy_workflow, ref, {"sha": sha})
        except OutcomeUnknown:
            # The dispatch may have happened: look for its run before trying once more.
            # If that second try is unclear too, the error ends this delivery; whoever
            # finds the intent later looks for the run again before dispatching.
            run = self._find_run(repo, policy, sha, live.at)
            if run is not None:
                self._record_run(repo, sha, live.intent_id, int(run["id"]), run.get("html_url"))
                return f"dispatched, run {run['id']} found after an unclear answer"
            result = repo.api.dispatch(policy.deploy_workflow, ref, {"sha": sha})
        run_id, run_url = result.run_id, result.html_url
        if run_id is None:  # an older GitHub answers 204 without the run
            run = self._find_run(repo, policy, sha, live.at)
            run_id, run_url = (int(run["id"]), run.get("html_url")) if run else (None, None)
        if run_id is not None:
            self._record_run(repo, sha, live.intent_id, run_id, run_url)
        return f"dispatched run {run_id}" if run_id else "dispatched"

    def _find_run(
        self, repo: Repo, policy: Policy, sha: str, since: datetime
    ) -> dict[str, Any] | None:
        """The deploy run for `sha`, found by the SHA in its run-name."""
        assert policy.deploy_workflow is not None
        for run in repo.api.workflow_runs(policy.deploy_workflow, event="workflow_dispatch"):
            created = _parse_time(run.get("created_at"))
            if sha in (run.get("display_title") or "") and (
                created is None or created >= since - timedelta(minutes=5)
            ):
                return run
        return None

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

    # -- deploy completed -----------------------------------------------------------------

    def on_deploy_completed(  # noqa: PLR0911  (one return per outcome)
        self, repo: Repo, event: WorkflowRunCompleted
    ) -> dict[str, Any]:
        run = event.workflow_run
        if run.status not in (None, "completed"):
            return {"result": "ignored", "why": f"deploy run {run.id} is {run.status}"}
        state = self.ledger.read_state(repo.id, repo.full_name)
        dispatch = _dispatch_of_run(state, run.id, run.display_title or "")
        if dispatch is None:
            return {
                "result": "ignored",
                "why": f"run {run.id} is not a deploy the governor started",
            }
        sha, conclusion = dispatch.sha, run.conclusion or "unknown"
        summary = {"sha": sha, "conclusion": conclusion, "run_id": run.id}
        if not self.ledger.mark_run_processed(repo.id, run.id, run.run_attempt, summary):
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

    # -- approvals --------------------------------------------------------------------------

    def on_label(self, repo: Repo, event: PullRequestLabeled, guid: str) -> dict[str, Any]:
        policy = parse_policy(repo.api.file_text(POLICY_PATH, repo.default_branch))
        if not isinstance(policy, Policy) or policy.approval.mode is ApprovalMode.COMMENT:
            return {"result": "ignored", "why": "labels are not how this repository approves"}
        if event.label.name != policy.approval.label:
            return {"result": "ignored", "why": f"label '{event.label.name}' is not an approval"}
        pull = event.pull_request
        request = _Request(
            pull.number, pull.user.login, event.sender.login, "label", pull.merge_commit_sha
        )
        return self._approve(repo, policy, request, guid)

    def on_comment(self, repo: Repo, event: IssueCommentCreated, guid: str) -> dict[str, Any]:
        if event.issue.pull_request is None:
            return {"result": "ignored", "why": "comment is not on a pull request"}
        words = event.comment.body.split()
        if not words or not words[0].startswith("/"):
            return {"result": "ignored", "why": "comment is not a command"}
        policy = parse_policy(repo.api.file_text(POLICY_PATH, repo.default_branch))
        if not isinstance(policy, Policy) or policy.approval.mode is ApprovalMode.LABEL:
            return {"result": "ignored", "why": "comments are not how this repository approves"}
        if words[0] != policy.approval.command:
            return {"result": "ignored", "why": f"'{words[0]}' is not the approval command"}
        request = _Request(
            event.issue.number, event.issue.user.login, event.comment.user.login, "comment", None
        )
        return self._approve(repo, policy, request, guid)

    def _approve(self, repo: Repo, policy: Policy, request: _Request, guid: str) -> dict[str, Any]:
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
        state = self.ledger.read_state(repo.id, repo.full_name)
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
            sha_policy = parse_policy(repo.api.file_text(POLICY_PATH, sha))
            results[sha] = self.evaluate(
                repo, sha, sha_policy, trigger=f"approval:{request.via}", delivery=guid
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
    return None


def _workflow_matches(spec: str, name: str | None, path: str | None) -> bool:
    if spec.endswith((".yml", ".yaml")):
        return bool(path) and (path == spec or (path or "").endswith("/" + spec.lstrip("/")))
    return name == spec


def _mode(policy: Policy | PolicyProblem | None, settings: AppSettings) -> Mode:
    if isinstance(policy, Policy) and policy.mode is not None:
        return policy.mode
    return settings.mode


def _newest_other_dispatch(state: ReleaseState, sha: str) -> Dispatch | None:
    others = [d for d in state.dispatches if d.sha not in (sha, state.production_sha)]
    return max(others, key=lambda d: d.at) if others else None


def _dispatch_of_run(state: ReleaseState, run_id: int, title: str) -> Dispatch | None:
    by_id = next((d for d in state.dispatches if d.run_id == run_id), None)
    if by_id is not None:
        return by_id
    return next((d for d in reversed(state.dispatches) if d.sha in title), None)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _summary(inputs: DecisionInputs) -> dict[str, Any]:
    policy = inputs.policy
    return {
        "production_sha": inputs.state.production_sha,
        "risk": inputs.risk.level.value,
        "risk_unknown": inputs.risk.unknown,
        "high_paths": list(inputs.risk.high_paths[:50]),
        "medium_paths": list(inputs.risk.medium_paths[:50]),
        "notes": list(inputs.risk.notes),
        "degraded": inputs.degraded,
        "approvals": [a.by for a in inputs.approvals if a.sha == inputs.sha],
        "superseded_by": inputs.superseded_by,
        "policy_problem": str(policy) if isinstance(policy, PolicyProblem) else None,
    }
