"""A webhook delivery in, a typed result out: classify, then the event's flow, under a claim.

The claim is keyed by what the payload is about (`governor.events.identity`), so GitHub
sending one fact twice, or a signed body replayed under a new GUID, is answered from the
first claim and changes nothing.
"""

from __future__ import annotations

import logging

from governor.events import (
    Delivery,
    Event,
    IssueCommentCreated,
    PullRequestChanged,
    PullRequestLabeled,
    WorkflowRunCompleted,
    classify,
    identity,
)
from governor.events import Ignored as IgnoredEvent
from governor.flows.context import Context, Repo, claimed
from governor.flows.results import FlowResult, Ignored
from governor.ledger import ClaimSite

log = logging.getLogger("governor.flows.delivery")


def handle(ctx: Context, delivery: Delivery) -> FlowResult:
    event = classify(delivery)
    if isinstance(event, IgnoredEvent):
        return Ignored(event.why)
    if not event.repository.default_branch:
        return Ignored("the payload names no default branch")
    return route(ctx, event, delivery.guid)


def route(ctx: Context, event: Event, guid: str) -> FlowResult:
    """The flow of an event. Verification and deploy outcomes claim where their work is
    recorded (after a check of the payload, so what is not theirs writes nothing); the
    others claim the delivery's own record.

    A flow's module is imported with the first event that needs it: an instance loads
    only the flows it serves (one whose deliveries are deploy outcomes and pull requests
    never loads the verification flow)."""
    repo = repo_of(ctx, event)
    if isinstance(event, WorkflowRunCompleted):
        if event.workflow_run.event == "workflow_dispatch":
            from governor.flows import deploy_outcome

            return deploy_outcome.on_deploy_completed(ctx, repo, event, guid)
        from governor.flows import verification

        return verification.on_verification(ctx, repo, event, guid)
    site = site_of(ctx, event)
    if isinstance(event, PullRequestLabeled):
        from governor.flows import approval

        labeled = event
        return claimed(
            ctx, site, "pull_request", guid, lambda _c: approval.on_label(ctx, repo, labeled, guid)
        )
    if isinstance(event, PullRequestChanged):
        from governor.flows import policy_review

        changed = event
        return claimed(
            ctx,
            site,
            "pull_request",
            guid,
            lambda _c: policy_review.on_pull_request(ctx, repo, changed),
        )
    if isinstance(event, IssueCommentCreated):
        from governor.flows import approval

        comment = event
        return claimed(
            ctx,
            site,
            "issue_comment",
            guid,
            lambda _c: approval.on_comment(ctx, repo, comment, guid),
        )
    from governor.flows import protection_rule

    request = event
    return claimed(
        ctx,
        site,
        "deployment_protection_rule",
        guid,
        lambda _c: protection_rule.on_protection_rule(ctx, repo, request),
    )


def site_of(ctx: Context, event: Event) -> ClaimSite:
    """Where the claim of an event's work is kept: the SHA's decision record for a
    verification, the run record for a deploy outcome, else the delivery's own record."""
    if isinstance(event, WorkflowRunCompleted):
        run, repo = event.workflow_run, event.repository
        if run.event == "workflow_dispatch":
            return ctx.ledger.run_site(repo.id, run.id, run.run_attempt)
        return ctx.ledger.decision_site(repo.id, repo.full_name, run.head_sha, identity(event))
    return ctx.ledger.delivery_site(identity(event))


def repo_of(ctx: Context, event: Event) -> Repo:
    full_name = event.repository.full_name
    assert event.repository.default_branch  # handle() answered payloads without one
    return Repo(
        id=event.repository.id,
        full_name=full_name,
        default_branch=event.repository.default_branch,
        installation_id=event.installation.id,
        api=ctx.github.repo(event.installation.id, full_name),
    )
