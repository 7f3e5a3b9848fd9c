"""What the decision page shows, built from the stored records. Pure: time is passed in.

Every string taken from a record is data to print, never markup or a URL: the template
escapes it, and every link here is built from trusted parts only (the GitHub web root
from the settings, the repository's full name when it is a valid one, and numbers).
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Final
from urllib.parse import quote

import msgspec

from governor.decision import Decision, Outcome, Reason
from governor.ledger import DecisionRecord, Evaluation
from governor.messages import unblock_hint
from governor.page.patterns import matched_paths
from governor.risk import Risk
from governor.state import Approval, ReleaseState

_FULL_NAME: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
_VERIFICATION_CLAIM: Final = re.compile(r"workflow-run-(\d{1,18})-(\d{1,18})-(\d{1,6})")
_SHA: Final = re.compile(r"[0-9a-f]{40}")


class Headline(StrEnum):
    GOING_OUT = "GOING OUT"
    HELD = "HELD"
    DEPLOYED = "DEPLOYED"
    FAILED = "FAILED"
    NOT_GOVERNED = "NOT GOVERNED"


TITLES: Final[dict[Reason, str]] = {
    Reason.DISABLED: "The governor does not govern this repository",
    Reason.POLICY_INVALID: "The release policy has a problem",
    Reason.DEPLOY_NOT_CONFIGURED: "No deploy workflow is configured",
    Reason.SUPERSEDED: "A newer SHA that contains this one ships instead",
    Reason.FREEZE_WINDOW: "A freeze is in force",
    Reason.FIRST_DEPLOY_REQUIRED: "The first deploy needs an approval",
    Reason.DEGRADED_HIGH_RISK: "Production is degraded and this change is high risk",
    Reason.COOLDOWN: "This SHA's deploy failed recently: cooling down",
    Reason.RATE_LIMIT: "Too many deploys in the last hour",
    Reason.ALLOW_LOW: "Low-risk change: allowed",
    Reason.DEGRADED_MEDIUM_HOLD: "Production is degraded and this change is medium risk",
    Reason.ALLOW_MEDIUM: "Medium-risk change: allowed",
    Reason.ALLOW_HIGH_APPROVED: "High-risk change, approved",
    Reason.ALLOW_HIGH_ENVIRONMENT: "High-risk change: the environment's reviewers decide",
    Reason.HIGH_RISK_NO_APPROVAL: "High-risk change without an approval",
    Reason.RISK_UNKNOWN: "The changed files could not all be seen",
    Reason.GOVERNOR_ERROR: "The governor failed while evaluating (fail-closed)",
    Reason.NOT_GOVERNOR_RUN: "The run is not a deploy the governor started",
    Reason.DEPLOY_CANCELLED: "Its deploy run was cancelled",
    Reason.ROLLBACK: "An operator rolled production back to this SHA",
}
RESUMES_BY_ITSELF: Final = frozenset({Reason.FREEZE_WINDOW, Reason.COOLDOWN, Reason.RATE_LIMIT})
INPUT_LABELS: Final = {
    "production_sha": "Production SHA decided against",
    "trusted_policy": "Trusted policy read from",
    "decided_by": "Decided by",
    "risk": "Risk",
    "risk_unknown": "File list incomplete",
    "degraded_labels": "Degraded-production labels with open issues",
    "superseded_by": "Superseded by",
    "policy_problem": "Trusted policy problem",
    "own_policy_problem": "This SHA's own policy problem",
}
_SHOWN_ELSEWHERE: Final = frozenset({"high_paths", "medium_paths", "notes"})


class Link(msgspec.Struct, frozen=True):
    text: str
    href: str


class RiskPath(msgspec.Struct, frozen=True):
    path: str
    level: str
    pattern: str | None
    """The pattern it matched, from the policy text the record keeps; None: the record
    does not keep it (evaluations recorded before policy texts were, or not made by the
    rules)."""


class Row(msgspec.Struct, frozen=True):
    label: str
    value: str


class HistoryEntry(msgspec.Struct, frozen=True):
    at: str
    trigger: str
    outcome: str
    reason: str
    risk: str
    detail: str
    until: str | None


class PageView(msgspec.Struct, frozen=True):
    repo: str
    sha: str
    short_sha: str
    headline: Headline
    tone: str
    """CSS class of the headline: go, hold, done, fail, off."""
    summary: str
    outcome: str
    reason: str
    reason_title: str
    detail: str
    todo: str
    clears: str
    risk: str
    risk_paths: tuple[RiskPath, ...]
    patterns_from: str
    """Which stored policy the patterns are from; empty when none is kept."""
    risk_notes: tuple[str, ...]
    inputs: tuple[Row, ...]
    history: tuple[HistoryEntry, ...]
    history_note: str
    links: tuple[Link, ...]
    production: tuple[Row, ...]
    approvals: tuple[Row, ...]
    generated_at: str


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else "-"


def _in(now: datetime, moment: datetime) -> str:
    seconds = int((moment - now).total_seconds())
    if seconds <= 0:
        return "now due"
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours >= 48:
        return f"in {hours // 24} days"
    return f"in {hours} h {minutes} min" if hours else f"in {max(minutes, 1)} min"


def web_root(api_url: str) -> str:
    """GitHub's web root for its REST root: api.github.com -> github.com; GHES drops /api/v3."""
    root = api_url.rstrip("/")
    if root == "https://api.github.com":
        return "https://github.com"
    return root.removesuffix("/api/v3")


class _Links:
    """URLs from trusted parts only; nothing when the repository name is not a valid one."""

    def __init__(self, root: str, repo: str) -> None:
        self.base = (
            f"{root}/{quote(repo, safe='/')}"
            if root.startswith(("https://", "http://")) and _FULL_NAME.fullmatch(repo)
            else None
        )

    def to(self, path: str, text: str) -> Link | None:
        return None if self.base is None else Link(text, f"{self.base}/{path}")


def _reason(value: str) -> Reason | None:
    try:
        return Reason(value)
    except ValueError:
        return None


def _decision(latest: Evaluation) -> Decision | None:
    reason = _reason(latest.reason)
    try:
        outcome = Outcome(latest.outcome)
        risk = Risk(latest.risk) if latest.risk else None
    except ValueError:
        return None
    if reason is None:
        return None
    return Decision(outcome, reason, risk, latest.detail, latest.until)


def _headline(  # noqa: PLR0911  (one return per headline)
    record: DecisionRecord, state: ReleaseState
) -> tuple[Headline, str, str]:
    sha, latest = record.sha, record.latest
    if state.production_sha == sha:
        return Headline.DEPLOYED, "done", f"In production since {when(state.production_at)}."
    if state.production_previous_sha == sha:
        return Headline.DEPLOYED, "done", "Was in production; a newer SHA replaced it."
    failure = state.failures.get(sha)
    if failure is not None and state.dispatch_for(sha) is None:
        return (
            Headline.FAILED,
            "fail",
            f"The deploy failed ({failure.conclusion}) at {when(failure.last_at)}; "
            "production stayed where it was.",
        )
    if latest is None:
        return Headline.HELD, "hold", "No evaluation is recorded yet."
    if latest.outcome == Outcome.ALLOW:
        live = state.dispatch_for(sha)
        if live is not None:
            return Headline.GOING_OUT, "go", f"Allowed; the deploy was dispatched {when(live.at)}."
        return Headline.GOING_OUT, "go", "Allowed. No deploy of it is in flight right now."
    if latest.outcome == Outcome.IGNORE:
        return Headline.NOT_GOVERNED, "off", "The governor leaves this SHA alone."
    return Headline.HELD, "hold", "Not deployed. The reason and what unblocks it are below."


def _todo(latest: Evaluation | None, headline: Headline) -> tuple[str, str]:  # noqa: PLR0911
    """(what to do, when it clears)."""
    if headline is Headline.DEPLOYED:
        return "Nothing to do.", "-"
    if latest is None:
        return "Wait for the verification workflow to finish on this SHA.", "-"
    decision = _decision(latest)
    if latest.outcome != Outcome.HOLD or decision is None:
        if headline is Headline.FAILED:
            return "Look at the deploy run and the failure issue; push a fix.", "-"
        return "Nothing to do: the deploy goes ahead.", "-"
    hint = unblock_hint(decision, None) or "see docs/reasons.md for this reason"
    if decision.reason in RESUMES_BY_ITSELF and latest.until is not None:
        return hint[:1].upper() + hint[1:] + ".", f"{when(latest.until)} (by itself)"
    if decision.reason in RESUMES_BY_ITSELF:
        return "Lift the freeze: it has no end set.", "when the freeze is lifted"
    return hint[:1].upper() + hint[1:] + ".", "when someone acts on it (not by itself)"


def _risk_paths(record: DecisionRecord) -> tuple[tuple[RiskPath, ...], str]:
    """The latest evaluation's risky paths with the patterns that classed them, and where
    the patterns are from."""
    latest = record.latest
    if latest is None:
        return (), ""
    matched, policy = matched_paths(record, latest)
    paths = tuple(RiskPath(m.path, m.level, m.pattern) for m in matched)
    return paths, policy.describe() if policy is not None else ""


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) or "none"
    return str(value)


def _inputs(inputs: dict[str, Any]) -> tuple[Row, ...]:
    rows = [Row(label, _text(inputs[key])) for key, label in INPUT_LABELS.items() if key in inputs]
    rows.extend(
        Row(str(key), _text(value))
        for key, value in sorted(inputs.items())
        if key not in INPUT_LABELS and key not in _SHOWN_ELSEWHERE
    )
    return tuple(rows)


def _history(record: DecisionRecord) -> tuple[tuple[HistoryEntry, ...], str]:
    entries = tuple(
        HistoryEntry(
            at=when(e.at),
            trigger=e.trigger,
            outcome=e.outcome,
            reason=e.reason,
            risk=e.risk or "-",
            detail=e.detail,
            until=when(e.until) if e.until else None,
        )
        for e in reversed(record.evaluations)
    )
    kept, total = len(record.evaluations), max(record.total_evaluations, len(record.evaluations))
    note = (
        f"{total} evaluations with a new outcome; the first and the latest {kept - 1} are kept."
        if total > kept
        else f"{kept} evaluation(s) with a new outcome, newest first."
    )
    return entries, note


def _pulls(record: DecisionRecord, state: ReleaseState) -> dict[int, str | None]:
    """The pull requests this SHA was approved on, by number, with their titles: from the
    approvals in the release state, and in the states the evaluations were judged on
    (the state forgets a SHA's approvals once it is deployed; its record does not)."""
    approvals: list[Approval] = []
    for evaluation in record.evaluations:
        if evaluation.replay is not None:
            approvals.extend(evaluation.replay.state.approvals_for(record.sha))
    approvals.extend(state.approvals_for(record.sha))
    pulls: dict[int, str | None] = {}
    for approval in sorted(approvals, key=lambda a: a.at):
        number = approval.pull_number
        if number is not None and number > 0:
            pulls[int(number)] = approval.pull_title or pulls.get(int(number))
    return pulls


def _links(record: DecisionRecord, state: ReleaseState, root: str) -> tuple[Link, ...]:
    make = _Links(root, record.repo)
    found: list[Link | None] = [make.to(f"commit/{record.sha}", f"Commit {record.sha[:7]}")]
    pulls = _pulls(record, state)
    found.extend(
        make.to(f"pull/{number}", f"Pull request #{number}" + (f": {title}" if title else ""))
        for number, title in pulls.items()
    )
    if not pulls:
        found.append(make.to(f"commit/{record.sha}", "Pull request: listed on the commit's page"))
    runs = sorted(
        {
            int(m.group(2))
            for key in record.claims
            if (m := _VERIFICATION_CLAIM.fullmatch(key)) and int(m.group(1)) == record.repo_id
        }
    )
    found.extend(make.to(f"actions/runs/{run}", f"Verification run {run}") for run in runs)
    deploy_runs = [d.run_id for d in state.dispatches if d.sha == record.sha and d.run_id]
    found.extend(
        make.to(f"actions/runs/{int(run)}", f"Deploy run {int(run)}")
        for run in dict.fromkeys(deploy_runs)
    )
    failure = state.failures.get(record.sha)
    if failure is not None and failure.issue_number is not None:
        number = int(failure.issue_number)
        found.append(make.to(f"issues/{number}", f"Failure issue #{number}"))
    return tuple(link for link in found if link is not None)


def _production(state: ReleaseState, sha: str, now: datetime) -> tuple[Row, ...]:
    rows = [
        Row("Production SHA", state.production_sha or "none deployed yet"),
        Row("Deployed at", when(state.production_at)),
        Row("Previous production SHA", state.production_previous_sha or "-"),
    ]
    current = state.dispatches[-1] if state.dispatches else None
    if current is not None and state.is_current(current) and current.sha != state.production_sha:
        run = f", run {current.run_id}" if current.run_id else ", no run seen yet"
        mine = " (this SHA)" if current.sha == sha else ""
        rows.append(Row("In flight", f"{current.sha}{mine}, dispatched {when(current.at)}{run}"))
    else:
        rows.append(Row("In flight", "nothing"))
    freeze = state.emergency_freeze
    if freeze is not None and (freeze.until is None or now < freeze.until):
        ends = f" until {when(freeze.until)}" if freeze.until else " (no end set)"
        rows.append(Row("Emergency freeze", f"by {freeze.by}: {freeze.reason}{ends}"))
    hold = state.holds.get(sha)
    if hold is not None:
        until = f", until {when(hold.until)}" if hold.until else ""
        rows.append(Row("Hold of this SHA", f"{hold.reason} since {when(hold.at)}{until}"))
    return tuple(rows)


def build(record: DecisionRecord, state: ReleaseState, now: datetime, github_web: str) -> PageView:
    """The page of `record`, with the release state `state`, at `now`."""
    latest = record.latest
    headline, tone, summary = _headline(record, state)
    todo, clears = _todo(latest, headline)
    inputs = latest.inputs if latest is not None else {}
    reason = _reason(latest.reason) if latest is not None else None
    if latest is not None and latest.until is not None and latest.outcome == Outcome.HOLD:
        clears = f"{clears}, {_in(now, latest.until)}"
    history, history_note = _history(record)
    notes = inputs.get("notes")
    risk_paths, patterns_from = _risk_paths(record)
    return PageView(
        repo=record.repo,
        sha=record.sha,
        short_sha=record.sha[:7] if _SHA.fullmatch(record.sha) else record.sha[:40],
        headline=headline,
        tone=tone,
        summary=summary,
        outcome=latest.outcome if latest is not None else "-",
        reason=latest.reason if latest is not None else "-",
        reason_title=TITLES.get(reason, "") if reason is not None else "",
        detail=latest.detail if latest is not None else "",
        todo=todo,
        clears=clears,
        risk=(latest.risk or "not assessed") if latest is not None else "-",
        risk_paths=risk_paths,
        patterns_from=patterns_from,
        risk_notes=tuple(str(n) for n in notes) if isinstance(notes, list) else (),
        inputs=_inputs(inputs),
        history=history,
        history_note=history_note,
        links=_links(record, state, github_web),
        production=_production(state, record.sha, now),
        approvals=tuple(
            Row(a.by, f"via {a.via} at {when(a.at)}") for a in state.approvals_for(record.sha)
        ),
        generated_at=when(now),
    )
