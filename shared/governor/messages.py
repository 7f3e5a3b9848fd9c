"""What people read: commit status text, unblock hints, failure issues. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from governor.decision import Decision, Outcome, Reason
from governor.policy import ApprovalMode, Mode, Policy, PolicyProblem

STATUS_LIMIT: Final = 140
"""GitHub refuses a commit status description longer than 140 characters."""
NOT_GOVERNOR_RUN_HINT: Final = (
    "deploys go through the governor: merge to the default branch and let verification "
    "pass; to redeploy, re-run the governor's own deploy run"
)


RECONCILE_EVERY_MINUTES: Final = 5
"""How often the scheduled reconcile runs (infra/ schedules it so): a hold that clears by
itself is taken up again within this long after it clears."""


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "a manual lift"


def _resumes_after(moment: datetime | None) -> str:
    if moment is None:
        return "held until the freeze is lifted by hand"
    return f"resumes within {RECONCILE_EVERY_MINUTES} min after {_when(moment)}"


def unblock_hint(decision: Decision, policy: Policy | PolicyProblem | None) -> str:
    """One line on what clears this HOLD, for the status and the decision page."""
    approval = policy.approval if isinstance(policy, Policy) else None
    how_to_approve = "approve it"
    if approval is not None:
        how_to_approve = (
            f"comment {approval.command} on its PR"
            if approval.mode is ApprovalMode.COMMENT
            else f"add label '{approval.label}' to its PR"
        )
    hints = {
        Reason.POLICY_INVALID: "fix the key named in .github/release-governor.yml",
        Reason.DEPLOY_NOT_CONFIGURED: (
            "set deploy_workflow to a workflow_dispatch workflow taking a sha input"
        ),
        Reason.SUPERSEDED: "a newer SHA ships instead; nothing to do",
        Reason.FREEZE_WINDOW: _resumes_after(decision.until),
        Reason.FIRST_DEPLOY_REQUIRED: how_to_approve,
        Reason.DEGRADED_HIGH_RISK: (
            f"close the incident issue; it resumes within {RECONCILE_EVERY_MINUTES} min"
        ),
        Reason.COOLDOWN: _resumes_after(decision.until),
        Reason.RATE_LIMIT: _resumes_after(decision.until),
        Reason.DEGRADED_MEDIUM_HOLD: (
            f"close the incident issue; it resumes within {RECONCILE_EVERY_MINUTES} min"
        ),
        Reason.HIGH_RISK_NO_APPROVAL: how_to_approve,
        Reason.RISK_UNKNOWN: f"diff too large to judge; {how_to_approve}",
        Reason.GOVERNOR_ERROR: f"retried by reconcile within {RECONCILE_EVERY_MINUTES} min",
        Reason.DEPLOY_CANCELLED: (
            f"to deploy it after all, re-run its verification or {how_to_approve}"
        ),
    }
    return hints.get(decision.reason, "")


def commit_status(
    decision: Decision, policy: Policy | PolicyProblem | None, mode: Mode
) -> tuple[str, str]:
    """(state, description) for the commit status of a decision."""
    if decision.awaiting_environment_approval:
        state = "pending"
    elif decision.outcome is Outcome.ALLOW:
        state = "success"
    else:
        state = "failure"
    prefix = ""
    if mode is Mode.SHADOW:
        state, prefix = "success", "shadow, would "
    text = f"{prefix}{decision.outcome.value} {decision.reason.value}: {decision.detail}"
    hint = unblock_hint(decision, policy) if decision.outcome is Outcome.HOLD else ""
    if hint:
        text = f"{text}. {hint}"
    return state, _fit(text)


def dispatched_status(reason: str | None, detail: str | None, run_id: int | None) -> str:
    """The status of a dispatch whose own status was lost with the delivery that made it."""
    run = f"deploy run {run_id}" if run_id is not None else "the deploy workflow"
    if reason is None:  # an intent written before decisions were kept with it
        return _fit(f"ALLOW: dispatched {run} (status restored after an interrupted delivery)")
    return _fit(f"ALLOW {reason}: {detail}; dispatched {run}")


def _fit(text: str) -> str:
    return text if len(text) <= STATUS_LIMIT else text[: STATUS_LIMIT - 1] + "…"


def failure_issue_title(sha: str) -> str:
    return f"Deploy failure: {sha[:7]}"


def failure_issue_body(sha: str, repo: str, conclusion: str, run_url: str | None) -> str:
    run = f"[the deploy run]({run_url})" if run_url else "the deploy run"
    return (
        f"The deploy of `{sha}` to production ended with **{conclusion}** in {run}.\n\n"
        f"The governor holds this SHA in cooldown; production stays on its previous SHA "
        f"until a deploy succeeds. Another failure of the same SHA within 30 minutes is "
        f"added here as a comment.\n\n"
        f"_Opened by Release Governor for {repo}._"
    )


def failure_comment(sha: str, conclusion: str, run_url: str | None) -> str:
    run = f" ([run]({run_url}))" if run_url else ""
    return f"The deploy of `{sha[:7]}` failed again: **{conclusion}**{run}."
