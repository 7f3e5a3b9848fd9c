"""Webhook deliveries as values: signature check and parsing. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import msgspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_BODY_BYTES: Final = 25 * 1024 * 1024
"""GitHub caps webhook payloads at 25 MB; anything larger is not from GitHub."""
_SIGNATURE: Final = re.compile(r"sha256=[0-9a-f]{64}")
_GUID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,99}")


class InvalidDelivery(Exception):
    """A delivery that is rejected before anything is stored; carries the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def signature_for(secret: bytes, body: bytes) -> str:
    """The value GitHub sends in X-Hub-Signature-256 for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secrets: Sequence[bytes], body: bytes, header: str | None) -> None:
    """Raise InvalidDelivery(401) unless `header` is the HMAC-SHA256 of `body` under a secret.

    Several secrets are accepted while one is rotated out. Every one is compared, in
    constant time, whichever matches, so timing does not tell which secret signed.
    """
    if not header:
        raise InvalidDelivery(401, "missing X-Hub-Signature-256 header: is the webhook secret set?")
    if not _SIGNATURE.fullmatch(header):
        raise InvalidDelivery(401, "X-Hub-Signature-256 is not of the form sha256=<64 hex digits>")
    expected = header.encode("ascii")
    matches = [hmac.compare_digest(signature_for(s, body).encode(), expected) for s in secrets]
    if not any(matches):
        raise InvalidDelivery(401, "X-Hub-Signature-256 does not match the body and webhook secret")


class Delivery(msgspec.Struct, frozen=True):
    guid: str
    event: str
    payload: dict[str, Any]


def parse_delivery(headers: dict[str, str], body: bytes, secrets: Sequence[bytes]) -> Delivery:
    """Check size, signature, headers and JSON, in that order; the signature before parsing."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidDelivery(413, f"body of {len(body)} bytes is over GitHub's 25 MB limit")
    verify_signature(secrets, body, headers.get("x-hub-signature-256"))
    guid = headers.get("x-github-delivery", "").strip()
    event = headers.get("x-github-event", "").strip()
    if not guid or not event:
        raise InvalidDelivery(400, "missing X-GitHub-Delivery or X-GitHub-Event header")
    if not _GUID.fullmatch(guid):
        raise InvalidDelivery(400, "X-GitHub-Delivery is not a delivery GUID")
    if not re.fullmatch(r"[a-z_]{1,64}", event):
        raise InvalidDelivery(400, "X-GitHub-Event is not an event name")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidDelivery(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidDelivery(400, "body is JSON but not an object")
    return Delivery(guid=guid, event=event, payload=payload)


# -- typed events ------------------------------------------------------------------------


class _Payload(BaseModel):
    # Built on first use: a cold start builds only the models its event needs.
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class _Account(_Payload):
    login: str


class _Repository(_Payload):
    id: int
    full_name: str = Field(pattern=r"^[^/\s]+/[^/\s]+$")
    default_branch: str | None = None


class _Installation(_Payload):
    id: int


class _HeadRepository(_Payload):
    id: int


class _WorkflowRun(_Payload):
    id: int
    name: str | None = None
    path: str | None = None
    display_title: str | None = None
    event: str
    head_branch: str | None = None
    head_sha: str = Field(pattern=r"^[0-9a-f]{40}$")
    status: str | None = None
    conclusion: str | None = None
    run_attempt: int = 1
    head_repository: _HeadRepository | None = None
    html_url: str | None = None
    created_at: str | None = None
    triggering_actor: _Account | None = None


class _Label(_Payload):
    name: str


class _PullHead(_Payload):
    sha: str


class _PullRequest(_Payload):
    number: int
    title: str | None = None
    user: _Account
    head: _PullHead
    merge_commit_sha: str | None = None
    updated_at: str | None = None


class _PullCommit(_Payload):
    """One side of a pull request: a commit, and (for the head) the repository it is in,
    a fork's or none when the fork was deleted."""

    sha: str = Field(pattern=r"^[0-9a-f]{40}$")
    repo: _HeadRepository | None = None


class _ChangedPull(_Payload):
    number: int = Field(ge=1, lt=2**31)
    head: _PullCommit
    base: _PullCommit


class _Issue(_Payload):
    number: int
    title: str | None = None
    user: _Account
    pull_request: dict[str, Any] | None = None


class _Comment(_Payload):
    id: int
    body: str
    user: _Account


class _RepoEvent(_Payload):
    repository: _Repository
    installation: _Installation
    sender: _Account


class WorkflowRunCompleted(_RepoEvent):
    workflow_run: _WorkflowRun


class PullRequestLabeled(_RepoEvent):
    label: _Label
    pull_request: _PullRequest


class PullRequestChanged(_RepoEvent):
    """A pull request opened, reopened or pushed to (`synchronize`): its head SHA is new,
    so a change to the policy file on it is reviewed (`flows/policy_review.py`)."""

    action: Literal["opened", "synchronize", "reopened"]
    pull_request: _ChangedPull

    @property
    def from_fork(self) -> bool:
        """The head commit is in another repository (or in one that no longer exists)."""
        head = self.pull_request.head.repo
        return head is None or head.id != self.repository.id


class IssueCommentCreated(_RepoEvent):
    issue: _Issue
    comment: _Comment


class _Deployment(_Payload):
    id: int


class DeploymentProtectionRuleRequested(_RepoEvent):
    """A deployment waits for the App's custom protection rule (GitHub waits up to 30 days)."""

    environment: str = Field(min_length=1)
    deployment_callback_url: str
    deployment: _Deployment

    def run_id(self) -> int | None:
        """The workflow run the callback is for, if the URL is this repository's callback."""
        path = urlsplit(self.deployment_callback_url).path
        owner, _, name = self.repository.full_name.partition("/")
        match = re.fullmatch(
            r"(?:/api/v3)?/repos/([^/]+)/([^/]+)/actions/runs/([0-9]{1,19})/"
            r"deployment_protection_rule",
            path,
        )
        if match is None or (match[1].lower(), match[2].lower()) != (owner.lower(), name.lower()):
            return None
        return int(match[3])


Event = (
    WorkflowRunCompleted
    | PullRequestLabeled
    | PullRequestChanged
    | IssueCommentCreated
    | DeploymentProtectionRuleRequested
)


class Ignored(msgspec.Struct, frozen=True):
    why: str


_HANDLED: Final[dict[tuple[str, str], type[Event]]] = {
    ("workflow_run", "completed"): WorkflowRunCompleted,
    ("pull_request", "labeled"): PullRequestLabeled,
    ("pull_request", "opened"): PullRequestChanged,
    ("pull_request", "synchronize"): PullRequestChanged,
    ("pull_request", "reopened"): PullRequestChanged,
    ("issue_comment", "created"): IssueCommentCreated,
    ("deployment_protection_rule", "requested"): DeploymentProtectionRuleRequested,
}
_ACKNOWLEDGED: Final = {
    "installation": "installations are picked up by reconcile; nothing to do now",
    "installation_repositories": "repositories are picked up by reconcile; nothing to do now",
    "ping": "pong",
}


def classify(delivery: Delivery) -> Event | Ignored:
    """The typed event a delivery carries, or why the governor has nothing to do with it.

    Never raises: GitHub sends odd payloads (no installation, null conclusion, empty
    names), and each gets a clear reason instead of an error.
    """
    if delivery.event in _ACKNOWLEDGED:
        return Ignored(_ACKNOWLEDGED[delivery.event])
    action = delivery.payload.get("action")
    model = _HANDLED.get((delivery.event, action if isinstance(action, str) else ""))
    if model is None:
        kind = f"'{delivery.event}' events" + (f" with action '{action}'" if action else "")
        return Ignored(f"{kind} are not used by the governor")
    if not isinstance(delivery.payload.get("installation"), dict):
        return Ignored("the payload names no installation, so the governor cannot act on it")
    try:
        event: Event = model.model_validate(delivery.payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return Ignored(f"payload field '{where}' is unusable: {first['msg']}")
    if isinstance(event, DeploymentProtectionRuleRequested) and event.run_id() is None:
        return Ignored("deployment_callback_url is not a workflow run of this repository")
    return event


def identity(event: Event) -> str:
    """What the delivery is about, from the signed payload itself, not its GUID.

    A delivery's claim is keyed by this, so the same body replayed under a new GUID (or
    GitHub sending one fact twice) finds the claim of the first and changes nothing.
    """
    repo = event.repository.id
    if isinstance(event, WorkflowRunCompleted):
        run = event.workflow_run
        return f"workflow-run-{repo}-{run.id}-{run.run_attempt}"
    if isinstance(event, IssueCommentCreated):
        return f"comment-{repo}-{event.comment.id}"
    if isinstance(event, PullRequestLabeled):
        pull = event.pull_request
        what = f"{event.label.name}\0{pull.updated_at}\0{event.sender.login}"
        return f"label-{repo}-{pull.number}-{hashlib.sha256(what.encode()).hexdigest()[:24]}"
    if isinstance(event, PullRequestChanged):
        # Per head SHA: the review is of the file at that commit (opened, then reopened
        # with the same head, is one review). About 75 characters with GitHub's ids.
        changed = event.pull_request
        return f"policy-pr-{repo}-{changed.number}-{changed.head.sha}"
    return f"protection-{repo}-{event.run_id()}-{event.deployment.id}"
