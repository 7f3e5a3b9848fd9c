"""A webhook delivery in, a typed result out: classify, claim, route to its flow, finish.

The claim is keyed by what the payload is about (`governor.events.identity`), so GitHub
sending one fact twice, or a signed body replayed under a new GUID, is answered from the
first claim and changes nothing.
"""

from __future__ import annotations

import logging

from governor.events import (
    Delivery,
    DeploymentProtectionRuleRequested,
    Event,
    IssueCommentCreated,
    PullRequestLabeled,
    WorkflowRunCompleted,
    classify,
    identity,
)
from governor.events import Ignored as IgnoredEvent
from governor.flows import approval, deploy_outcome, protection_rule, verification
from governor.flows.context import Context, Repo
from governor.flows.results import Duplicate, FlowResult, Ignored, InProgress, to_json
from governor.ledger import ClaimStatus
from governor.store import StoreError

log = logging.getLogger("governor.flows.delivery")


def handle(ctx: Context, delivery: Delivery) -> FlowResult:
    event = classify(delivery)
    if isinstance(event, IgnoredEvent):
        return Ignored(event.why)
    if not event.repository.default_branch:
        return Ignored("the payload names no default branch")
    key = identity(event)
    claim = ctx.ledger.claim_delivery(
        key, delivery.event, ctx.clock(), ctx.lease, guid=delivery.guid
    )
    if claim.status is ClaimStatus.DONE:
        return Duplicate(claim.outcome)
    if claim.status is ClaimStatus.IN_PROGRESS:
        return InProgress(claim.lease_until)
    try:
        result = route(ctx, event, delivery.guid)
    except Exception:
        _release(ctx, key, claim.owner)  # the redelivery (or reconcile) redoes it
        raise
    ctx.ledger.finish_delivery(key, to_json(result), ctx.clock())
    return result


def route(ctx: Context, event: Event, guid: str) -> FlowResult:
    repo = repo_of(ctx, event)
    if isinstance(event, WorkflowRunCompleted):
        if event.workflow_run.event == "workflow_dispatch":
            return deploy_outcome.on_deploy_completed(ctx, repo, event)
        return verification.on_verification(ctx, repo, event, guid)
    if isinstance(event, PullRequestLabeled):
        return approval.on_label(ctx, repo, event, guid)
    if isinstance(event, IssueCommentCreated):
        return approval.on_comment(ctx, repo, event, guid)
    assert isinstance(event, DeploymentProtectionRuleRequested)
    return protection_rule.on_protection_rule(ctx, repo, event)


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


def _release(ctx: Context, key: str, owner: str) -> None:
    try:
        ctx.ledger.release_delivery(key, owner, ctx.clock())
    except StoreError:
        log.warning("could not release the claim; it expires by itself", extra={"claim": key})
