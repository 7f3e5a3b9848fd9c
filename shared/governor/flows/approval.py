"""An approval (the trusted policy's label on a pull request, its comment command, or an
operator's `governor approve`): record it for the held SHAs of that pull request (or the
SHA named), then evaluate them again.

    gather  the state, the trusted policy, the approver's permission, the PR's SHAs
    plan    whether this person may approve under the trusted rules
    act     record the approval per SHA, then the verification flow for each
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal

import msgspec

from governor import state as transitions
from governor.events import IssueCommentCreated, PullRequestLabeled
from governor.flows import verification
from governor.flows.context import Context, Repo, read_trusted
from governor.flows.results import Approved, Evaluated, Ignored, Kind
from governor.policy import ApprovalMode, Policy
from governor.state import Approval, ReleaseState


class _Request(msgspec.Struct, frozen=True):
    """An approval as asked for: on which pull request, by whom, through which route."""

    pull_number: int
    author: str
    approver: str
    via: Literal["label", "comment"]
    merge_commit_sha: str | None
    title: str | None = None
    """The pull request's title, as the event carries it."""


def on_label(
    ctx: Context, repo: Repo, event: PullRequestLabeled, delivery: str
) -> Approved | Ignored:
    state = ctx.ledger.read_state(repo.id, repo.full_name)
    policy = read_trusted(repo, state.production_sha).governing
    if policy is None or policy.approval.mode is ApprovalMode.COMMENT:
        return Ignored("labels are not how this repository approves")
    if event.label.name != policy.approval.label:
        return Ignored(f"label '{event.label.name}' is not an approval")
    pull = event.pull_request
    request = _Request(
        pull.number,
        pull.user.login,
        event.sender.login,
        "label",
        pull.merge_commit_sha,
        pull.title,
    )
    return _approve(ctx, repo, policy, request, delivery=delivery, state=state)


def on_comment(
    ctx: Context, repo: Repo, event: IssueCommentCreated, delivery: str
) -> Approved | Ignored:
    if event.issue.pull_request is None:
        return Ignored("comment is not on a pull request")
    words = event.comment.body.split()
    if not words or not words[0].startswith("/"):
        return Ignored("comment is not a command")
    state = ctx.ledger.read_state(repo.id, repo.full_name)
    policy = read_trusted(repo, state.production_sha).governing
    if policy is None or policy.approval.mode is ApprovalMode.LABEL:
        return Ignored("comments are not how this repository approves")
    if words[0] != policy.approval.command:
        return Ignored(f"'{words[0]}' is not the approval command")
    issue = event.issue
    request = _Request(
        issue.number, issue.user.login, event.comment.user.login, "comment", None, issue.title
    )
    return _approve(ctx, repo, policy, request, delivery=delivery, state=state)


def _approve(
    ctx: Context,
    repo: Repo,
    policy: Policy,
    request: _Request,
    *,
    delivery: str,
    state: ReleaseState,
) -> Approved | Ignored:
    """Record an approval allowed by the trusted rules, then evaluate the SHA again."""
    approver = request.approver
    if approver == request.author and not policy.approval.allow_author:
        return Ignored(f"{approver} wrote the pull request and may not approve it")
    permission = repo.api.permission(approver)
    needed = policy.approval.min_permission
    if permission is None or permission.rank < needed.rank:
        return Ignored(f"{approver} has {permission or 'no'} permission, needs {needed}")
    held = [sha for sha in state.holds if sha == request.merge_commit_sha] or [
        sha
        for sha in state.holds
        if any(p.get("number") == request.pull_number for p in repo.api.pulls_for_commit(sha))
    ]
    if not held:
        return Ignored(f"no held SHA belongs to pull request #{request.pull_number}")
    evaluations: dict[str, Evaluated | Ignored] = {}
    for sha in held:
        now = ctx.clock()
        approval = Approval(
            sha=sha,
            by=approver,
            at=now,
            via=request.via,
            pull_number=request.pull_number,
            pull_title=request.title,
        )
        ctx.ledger.transition(repo.id, repo.full_name, _recorded(approval, now))
        evaluations[sha] = verification.evaluate(
            ctx, repo, sha, trigger=f"approval:{request.via}", delivery=delivery
        )
    return Approved(approver, evaluations)


def _recorded(approval: Approval, now: datetime) -> Callable[[ReleaseState], ReleaseState]:
    return lambda state: transitions.approval_recorded(state, approval, now)


def by_operator(
    ctx: Context, repo: Repo, sha: str, *, by: str, why: str, identity: str | None
) -> Evaluated | Ignored:
    """`governor approve`: an operator's approval of `sha`, recorded with who and why, then
    the SHA evaluated again. Whoever can write the store and use the App's credentials
    is trusted as an operator: no pull request, label or permission is asked for.

    A SHA in production already needs no approval: nothing is recorded, evaluated or
    posted, and the answer is `in_production`. That is decided in the state's own
    conditional write, so a SHA that reaches production while the approval is being
    written gets no approval either."""
    if ctx.ledger.read_state(repo.id, repo.full_name).production_sha == sha:
        return Evaluated(Kind.IN_PRODUCTION, sha)
    reachable = repo.api.compare(repo.default_ref, sha)
    if not reachable.head_is_ancestor:  # nothing recorded for a SHA that cannot ship
        return Ignored(f"{sha} is not on {repo.default_ref} ({reachable.status})")
    now = ctx.clock()
    approval = Approval(sha=sha, by=by, at=now, via="cli", reason=why, identity=identity)
    after = ctx.ledger.transition(repo.id, repo.full_name, _unless_in_production(approval, now))
    if after.production_sha == sha:
        return Evaluated(Kind.IN_PRODUCTION, sha)
    return verification.evaluate(ctx, repo, sha, trigger="approval:cli", delivery=None)


def _unless_in_production(
    approval: Approval, now: datetime
) -> Callable[[ReleaseState], ReleaseState]:
    """The approval recorded, unless its SHA is in production (the state unchanged: the
    ledger then writes nothing)."""
    return lambda state: (
        state
        if state.production_sha == approval.sha
        else transitions.approval_recorded(state, approval, now)
    )
