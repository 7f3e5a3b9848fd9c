"""A stateful fake of GitHub's REST API, served over HTTP on 127.0.0.1 for end-to-end tests.

Only GitHub is faked: the governor under test talks to `FakeGitHub.url` as its
GITHUB_API_URL and gets the answers GitHub gives: the same status codes, JSON shapes (the
fake's 2xx bodies validate against the response schemas of the OpenAPI subset), error
bodies `{"message", "documentation_url", "status"}`, Link-header pagination, rate-limit
headers, JWT and installation-token authentication.

Conditional requests and rate limits: every successful GET carries a strong ETag (the
SHA-256 of its exact JSON body, so of that page for a list); `If-None-Match` with the
current tag answers 304 Not Modified without a body. As GitHub documents, a 304 does not
count against the primary rate limit. Each installation has its own limit (shared by all
its tokens: 5,000 an hour plus 50 per repository beyond 20, at most 12,500; see
`set_rate_limit`), the App's JWT requests another; x-ratelimit-used/remaining report the
bucket's counted requests, and past the limit GitHub's 403 comes back.
`counted_requests` / `uncounted_requests` / `reset_request_counts` and
`secondary_points_peak` / `peak_concurrency` let benchmarks report what a run cost.

Webhooks: `deliver` POSTs a delivery as GitHub's Hookshot does (headers, HMAC signatures
with `webhook_secret`, a 10 s timeout) to `webhook_url` and records it for the deliveries
API (`GET /app/hook/deliveries`, newest first, cursor pages). A redelivery
(`POST .../attempts`) answers 202 and re-sends the same request (same GUID) in the
background; `wait_for_redeliveries` joins it. Only deliveries of the past 3 days are
redelivered. Nothing is ever delivered by itself: a test sends what GitHub would send.

Every request is first matched against the OpenAPI subset (tests/fixtures/github/): an
operation GitHub does not document answers 404 and is recorded in `violations`; a request
that breaks the documented contract (undeclared query parameter, wrongly typed value, body
that does not validate) answers 400 `{"message": "contract violation: ..."}` and is
recorded too. Missing `Accept: application/vnd.github+json` or `X-GitHub-Api-Version:
2022-11-28` headers are recorded (not rejected), so a test can assert the client sends them.

Simplifications relative to github.com, on purpose:
- One linear-or-branching commit graph per repository (each commit has one parent); no
  merges, annotated tags, trees or blobs. Refs are branch names, `refs/heads/<branch>`,
  lightweight tags (`set_tag`) by name or as `refs/tags/<tag>`, full SHAs or unique SHA
  prefixes of at least 7 characters. A bare name is a branch first, then a tag.
- Compare: `files` is the net change of the commits in (merge base, head], sorted by file
  name and capped at 300 entries like GitHub; it is sent on page 1 only (later pages get
  `files: []`). Without `page`/`per_page` the commit list holds up to 250 commits.
- Contents: a file set on a ref is visible at that ref, at the commit a branch ref points
  to, and at descendants of a commit it was set on (unless a later commit removed it).
  Directories are not listed.
- Permissions of installation tokens are reported, not enforced per endpoint. A token of
  another installation (or scoped to other repositories) gets 404 on a repository, as
  for a private repository on GitHub.
- Workflow runs do not run: tests move them with `start_run` / `complete_run` / `rerun`.
  Runs come from the dispatch API, from a person (`start_manual_run`) or from any other
  event (`add_run`).
- The commit-status `creator`, issue/comment authors and run actors created through the
  API are the app's bot user (`<app_slug>[bot]`).
- Custom deployment protection rules: `protection_request_payload` builds the webhook
  GitHub sends when a run's job reaches a protected environment; the review posted back
  decides the gate once per run attempt and environment (comment-only reviews do not).
  `validate_webhook` checks payloads against the webhook schemas in
  tests/fixtures/github/webhook-schemas/.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast
from urllib.parse import parse_qs, quote, urlencode

import httpx
import jwt
from jsonschema import Draft202012Validator

from tests.support.openapi_contract import ContractViolation, OpenApiContract, Operation

API_VERSION = "2022-11-28"
MEDIA_TYPE = "application/vnd.github+json"
RATE_LIMIT = 5000
"""An installation's (and the App's) primary rate limit per hour, before scaling."""
RATE_LIMIT_MAX = 12_500
"""An installation's limit scales with its repositories up to this (not on GHEC)."""
RATE_LIMIT_UNAUTHENTICATED = 60
RATE_LIMIT_WINDOW_S = 3600
RATE_LIMIT_DOCS = (
    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits"
)
WEBHOOK_TIMEOUT_S = 10.0
"""github.com cuts a webhook delivery off after 10 s (GitHub Enterprise Server: 30 s)."""
REDELIVERY_WINDOW_S = 3 * 24 * 3600
"""github.com redelivers deliveries of the past 3 days only."""
HOOKSHOT_VERSION = "7e1b2f4"
MAX_COMPARE_FILES = 300
COMPARE_DEFAULT_COMMITS = 250
WEB_URL = "https://github.com"
DOCS_URL = "https://docs.github.com/rest"
JWT_MAX_LIFETIME_S = 600
CLOCK_SLACK_S = 60
TOKEN_LIFETIME_S = 3600
WEBHOOK_SCHEMAS = Path(__file__).resolve().parents[1] / "fixtures" / "github" / "webhook-schemas"

FILE_STATUSES = frozenset({"added", "removed", "modified", "renamed", "copied", "changed"})
RUN_CONCLUSIONS = frozenset(
    {
        "success",
        "failure",
        "neutral",
        "cancelled",
        "skipped",
        "timed_out",
        "action_required",
        "stale",
        "startup_failure",
    }
)
STATUS_STATES = frozenset({"error", "failure", "pending", "success"})
# fine-grained role -> legacy `permission` of the collaborator-permission endpoint
ROLE_TO_LEGACY = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
    "none": "none",
}
DEFAULT_PERMISSIONS: dict[str, str] = {
    "actions": "write",
    "contents": "read",
    "deployments": "write",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "read",
    "statuses": "write",
}
DEFAULT_EVENTS = ["issue_comment", "pull_request", "push", "workflow_run"]

_SHA = re.compile(r"^[0-9a-f]{40}$")
_SHA_PREFIX = re.compile(r"^[0-9a-f]{7,40}$")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")

JSON = dict[str, Any]


def iso(ts: float) -> str:
    """GitHub's timestamp format: 2011-01-26T19:01:12Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_when(text: str) -> tuple[float, float]:
    """A date or date-time of the search syntax, as [start, end) in epoch seconds."""
    value = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        start = datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()
        return start, start + 86400
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp(), moment.timestamp() + 1


def _created_range(query: str) -> tuple[float, float]:
    """The [low, high) a `created` qualifier selects (GitHub's search syntax for dates)."""
    try:
        if ".." in query:
            first, _, last = query.partition("..")
            low = -math.inf if first in ("", "*") else _parse_when(first)[0]
            high = math.inf if last in ("", "*") else _parse_when(last)[1]
            return low, high
        for op in (">=", "<=", ">", "<"):
            if query.startswith(op):
                start, end = _parse_when(query[len(op) :])
                return {
                    ">=": (start, math.inf),
                    ">": (end, math.inf),
                    "<=": (-math.inf, end),
                    "<": (-math.inf, start),
                }[op]
        return _parse_when(query)
    except ValueError as exc:
        raise GitHubError(422, f"Invalid created parameter: {query}") from exc


def _delivery_status(status_code: int) -> str:
    """How GitHub words a delivery's outcome for a status code (0: no answer in time)."""
    if 200 <= status_code < 300:
        return "OK"
    if status_code == 0:
        return "timed out"
    return f"Invalid HTTP Response: {status_code}"


def _bucket_key(installation_id: int | None, *, app: bool) -> str:
    if app:
        return "app"
    if installation_id is None:
        raise ValueError("name an installation_id, or app=True")
    return f"installation:{installation_id}"


def _node_id(kind: str, number: int) -> str:
    return base64.b64encode(f"0:{kind}{number}".encode()).decode().rstrip("=")


def _hex(*parts: object) -> str:
    return hashlib.sha1(
        "\0".join(str(p) for p in parts).encode(), usedforsecurity=False
    ).hexdigest()


def git_blob_sha(content: bytes) -> str:
    """The sha Git (and the contents API) gives a blob."""
    header = f"blob {len(content)}\0".encode()
    return hashlib.sha1(header + content, usedforsecurity=False).hexdigest()


def github_base64(content: bytes) -> str:
    """Base64 the way the contents API sends it: a newline after every 60 characters."""
    encoded = base64.b64encode(content).decode()
    return "".join(encoded[i : i + 60] + "\n" for i in range(0, len(encoded), 60))


@dataclass
class Call:
    """One request the fake answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    json: Any
    operation_id: str | None
    status: int
    headers: dict[str, str]
    bucket: str = "anonymous"
    """The primary rate limit it went to: `app`, `installation:<id>` or `anonymous`."""
    counted: bool = True
    """Whether it counted against that limit (a 304 does not, nor a refusal past it)."""
    at: float = 0.0
    """When it arrived (time.time())."""


@dataclass(frozen=True)
class Delivered:
    """What one webhook delivery by the fake (GitHub's Hookshot) did."""

    delivery_id: int
    guid: str
    status_code: int
    """The webhook's HTTP status; 0 when there was no answer (timed out, no connection)."""
    status: str
    """As GitHub words it: `OK`, `Invalid HTTP Response: 503`, `timed out`, ..."""
    body: Any
    """The answer's body: parsed JSON, else its text; None without an answer."""
    duration_s: float
    redelivery: bool

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300


@dataclass
class _Delivery:
    delivery_id: int
    guid: str
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None
    delivered_at: float
    redelivery: bool
    status_code: int
    status: str
    duration: float
    url: str | None = None
    request_headers: dict[str, str] = field(default_factory=dict)
    payload: JSON | None = None
    body: bytes | None = None  # the exact bytes sent (and signed)
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str | None = None


@dataclass
class _Fault:
    kind: Literal["fail", "slow", "rate_limit"]
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: JSON | None = None
    delay_s: float = 0.0
    retry_after_s: int = 1


@dataclass
class _Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    rate_limited: bool = False
    uncounted: bool = False  # did not count against the primary rate limit


@dataclass
class _Token:
    token: str
    installation_id: int
    expires_at: float
    repositories: frozenset[str] | None  # lower-case full names, None: all of the installation
    permissions: dict[str, str]


@dataclass
class _Request:
    op: Operation
    path: str
    query: dict[str, list[str]]
    body: Any
    token: _Token | None
    bucket: str = "anonymous"

    def q(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


class GitHubError(Exception):
    """Raised by a handler to answer the way GitHub answers an error."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[JSON] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}


def _not_found() -> GitHubError:
    return GitHubError(404, "Not Found")


@dataclass
class _Commit:
    sha: str
    parent: str | None
    files: list[JSON]
    message: str
    author: str
    timestamp: float


@dataclass
class _Workflow:
    workflow_id: int
    file_name: str
    name: str
    run_name_template: str
    inputs: Mapping[str, bool] | None
    created_at: float

    @property
    def path(self) -> str:
        return f".github/workflows/{self.file_name}"


@dataclass
class _Run:
    run_id: int
    workflow_id: int
    run_number: int
    display_title: str
    head_branch: str
    head_sha: str
    inputs: dict[str, Any]
    actor: str  # who started the run; a re-run keeps it
    triggering_actor: str  # who started the current attempt
    event: str
    created_at: float
    updated_at: float
    run_started_at: float  # when the current attempt started
    status: str = "queued"
    conclusion: str | None = None
    run_attempt: int = 1


@dataclass
class _Issue:
    number: int
    issue_id: int
    title: str
    body: str | None
    user: str
    labels: list[str]
    created_at: float
    updated_at: float
    state: str = "open"
    closed_at: float | None = None
    # set for pull requests, which are issues too on GitHub
    pull: _Pull | None = None


@dataclass
class _Pull:
    pull_id: int
    head_sha: str
    head_ref: str
    base_ref: str
    merge_commit_sha: str | None
    merged: bool


class FakeRepo:
    """The state of one repository. Every method holds the FakeGitHub's lock."""

    def __init__(
        self,
        fake: FakeGitHub,
        owner: str,
        name: str,
        *,
        repo_id: int,
        installation_id: int,
        default_branch: str,
    ) -> None:
        self._fake = fake
        self._lock = fake.lock
        self.owner = owner
        self.name = name
        self.full_name = f"{owner}/{name}"
        self.repo_id = repo_id
        self.installation_id = installation_id
        self.default_branch = default_branch
        self.created_at = time.time()
        self._commits: dict[str, _Commit] = {}
        self._branches: dict[str, str] = {}
        self._tags: dict[str, str] = {}
        self._files: dict[tuple[str, str], bytes] = {}
        self._workflows: dict[int, _Workflow] = {}
        self._runs: dict[int, _Run] = {}
        self._runs_by_workflow: dict[int, list[int]] = {}  # oldest first
        self._run_numbers: dict[int, int] = {}
        self._statuses: dict[str, list[JSON]] = {}
        self._issues: dict[int, _Issue] = {}
        self._comments: dict[int, list[JSON]] = {}
        self._labels: dict[str, JSON] = {}
        self._permissions: dict[str, tuple[str, str]] = {}
        self._gate_reviews: list[JSON] = []

    # ----------------------------------------------------------------- URLs and shapes

    @property
    def api_url(self) -> str:
        return f"{self._fake.url}/repos/{self.full_name}"

    @property
    def html_url(self) -> str:
        return f"{WEB_URL}/{self.full_name}"

    def _owner_json(self) -> JSON:
        return self._fake.user_json(self.owner, kind="Organization")

    def repo_json(self, *, minimal: bool = False) -> JSON:
        """The repository object: the full one, or the 'minimal repository' of runs."""
        api = self.api_url
        doc: JSON = {
            "id": self.repo_id,
            "node_id": _node_id("Repository", self.repo_id),
            "name": self.name,
            "full_name": self.full_name,
            "private": False,
            "owner": self._owner_json(),
            "html_url": self.html_url,
            "description": None,
            "fork": False,
            "url": api,
            "archive_url": f"{api}/{{archive_format}}{{/ref}}",
            "assignees_url": f"{api}/assignees{{/user}}",
            "blobs_url": f"{api}/git/blobs{{/sha}}",
            "branches_url": f"{api}/branches{{/branch}}",
            "collaborators_url": f"{api}/collaborators{{/collaborator}}",
            "comments_url": f"{api}/comments{{/number}}",
            "commits_url": f"{api}/commits{{/sha}}",
            "compare_url": f"{api}/compare/{{base}}...{{head}}",
            "contents_url": f"{api}/contents/{{+path}}",
            "contributors_url": f"{api}/contributors",
            "deployments_url": f"{api}/deployments",
            "downloads_url": f"{api}/downloads",
            "events_url": f"{api}/events",
            "forks_url": f"{api}/forks",
            "git_commits_url": f"{api}/git/commits{{/sha}}",
            "git_refs_url": f"{api}/git/refs{{/sha}}",
            "git_tags_url": f"{api}/git/tags{{/sha}}",
            "hooks_url": f"{api}/hooks",
            "issue_comment_url": f"{api}/issues/comments{{/number}}",
            "issue_events_url": f"{api}/issues/events{{/number}}",
            "issues_url": f"{api}/issues{{/number}}",
            "keys_url": f"{api}/keys{{/key_id}}",
            "labels_url": f"{api}/labels{{/name}}",
            "languages_url": f"{api}/languages",
            "merges_url": f"{api}/merges",
            "milestones_url": f"{api}/milestones{{/number}}",
            "notifications_url": f"{api}/notifications{{?since,all,participating}}",
            "pulls_url": f"{api}/pulls{{/number}}",
            "releases_url": f"{api}/releases{{/id}}",
            "stargazers_url": f"{api}/stargazers",
            "statuses_url": f"{api}/statuses/{{sha}}",
            "subscribers_url": f"{api}/subscribers",
            "subscription_url": f"{api}/subscription",
            "tags_url": f"{api}/tags",
            "teams_url": f"{api}/teams",
            "trees_url": f"{api}/git/trees{{/sha}}",
        }
        if minimal:
            return doc
        open_count = sum(1 for issue in self._issues.values() if issue.state == "open")
        pushed = max((c.timestamp for c in self._commits.values()), default=self.created_at)
        doc.update(
            {
                "created_at": iso(self.created_at),
                "updated_at": iso(pushed),
                "pushed_at": iso(pushed),
                "git_url": f"git://github.com/{self.full_name}.git",
                "ssh_url": f"git@github.com:{self.full_name}.git",
                "clone_url": f"{self.html_url}.git",
                "svn_url": self.html_url,
                "homepage": None,
                "size": 0,
                "stargazers_count": 0,
                "watchers_count": 0,
                "language": None,
                "has_issues": True,
                "has_projects": True,
                "has_downloads": True,
                "has_wiki": True,
                "has_pages": False,
                "has_discussions": False,
                "forks_count": 0,
                "mirror_url": None,
                "archived": False,
                "disabled": False,
                "open_issues_count": open_count,
                "license": None,
                "allow_forking": True,
                "is_template": False,
                "web_commit_signoff_required": False,
                "topics": [],
                "visibility": "public",
                "forks": 0,
                "open_issues": open_count,
                "watchers": 0,
                "default_branch": self.default_branch,
                "network_count": 0,
                "subscribers_count": 0,
            }
        )
        return doc

    def _organization_json(self) -> JSON:
        """The 'organization simple' object that webhook payloads carry."""
        owner = self._owner_json()
        api = f"{self._fake.url}/orgs/{quote(self.owner)}"
        return {
            "login": self.owner,
            "id": owner["id"],
            "node_id": owner["node_id"],
            "url": api,
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events",
            "hooks_url": f"{api}/hooks",
            "issues_url": f"{api}/issues",
            "members_url": f"{api}/members{{/member}}",
            "public_members_url": f"{api}/public_members{{/member}}",
            "avatar_url": owner["avatar_url"],
            "description": None,
        }

    def _installation_ref(self) -> JSON:
        return {
            "id": self.installation_id,
            "node_id": _node_id("Installation", self.installation_id),
        }

    # ----------------------------------------------------------------------- commits

    def add_commit(
        self,
        sha: str,
        *,
        files: list[JSON],
        parent: str | None = None,
        branch: str | None = None,
        message: str | None = None,
        author: str = "octocat",
        pushed_at: float | None = None,
    ) -> None:
        """Add a commit on `branch` (default: the default branch) and move the branch to it.

        `pushed_at` (default now): when it was pushed; the repository's `pushed_at` is the
        latest of them (GitHub's is whole seconds, so two pushes in one second look alike).

        `parent` defaults to the branch's current tip (None for the first commit), which
        builds a linear history; give another parent to fork a branch. `files` are compare
        file entries: `filename`, `status` (added/removed/modified/renamed) and, for
        renames, `previous_filename`; `additions`, `deletions`, `patch` are optional.
        """
        if not _SHA.match(sha):
            raise ValueError(f"a commit sha is 40 lower-case hex digits, not {sha!r}")
        for entry in files:
            if entry.get("status") not in FILE_STATUSES or not entry.get("filename"):
                raise ValueError(f"not a compare file entry: {entry!r}")
            if entry["status"] == "renamed" and not entry.get("previous_filename"):
                raise ValueError(f"a renamed file needs previous_filename: {entry!r}")
        with self._lock:
            if sha in self._commits:
                raise ValueError(f"commit {sha} already exists")
            target = branch or self.default_branch
            if parent is None:
                parent = self._branches.get(target)
            elif parent not in self._commits:
                raise ValueError(f"unknown parent commit {parent}")
            self._commits[sha] = _Commit(
                sha=sha,
                parent=parent,
                files=[dict(entry) for entry in files],
                message=message or f"Change {sha[:7]}",
                author=author,
                timestamp=time.time() if pushed_at is None else pushed_at,
            )
            self._branches[target] = sha

    def set_branch(self, name: str, sha: str) -> None:
        with self._lock:
            if sha not in self._commits:
                raise ValueError(f"unknown commit {sha}")
            self._branches[name] = sha

    def set_tag(self, name: str, sha: str) -> None:
        """A lightweight tag `name` on commit `sha` (moved there if it exists)."""
        with self._lock:
            if sha not in self._commits:
                raise ValueError(f"unknown commit {sha}")
            self._tags[name] = sha

    def tip(self, branch: str | None = None) -> str | None:
        with self._lock:
            return self._branches.get(branch or self.default_branch)

    def resolve(self, ref: str) -> str | None:
        """The commit a ref names, or None.

        `refs/heads/<branch>`, `refs/tags/<tag>`, a bare name (a branch first, then a tag:
        a tag `main` does not hide the branch `main`, unlike `git rev-parse`), a full SHA
        or a unique SHA prefix.
        """
        with self._lock:
            for prefix, names in (("refs/heads/", self._branches), ("refs/tags/", self._tags)):
                if ref.startswith(prefix):
                    return names.get(ref.removeprefix(prefix))
            named = self._branches.get(ref) or self._tags.get(ref)
            if named is not None:
                return named
            if ref in self._commits:
                return ref
            if _SHA_PREFIX.match(ref):
                found = [sha for sha in self._commits if sha.startswith(ref)]
                if len(found) == 1:
                    return found[0]
            return None

    def _chain(self, sha: str) -> list[str]:
        chain: list[str] = []
        current: str | None = sha
        while current is not None:
            chain.append(current)
            current = self._commits[current].parent
        return chain

    def _git_user(self, login: str, ts: float) -> JSON:
        return {"name": login, "email": f"{login}@users.noreply.github.com", "date": iso(ts)}

    def commit_json(self, sha: str) -> JSON:
        commit = self._commits[sha]
        api = self.api_url
        tree = _hex("tree", sha)
        parents = [commit.parent] if commit.parent else []
        return {
            "sha": sha,
            "node_id": _node_id("Commit", int(sha[:8], 16)),
            "url": f"{api}/commits/{sha}",
            "html_url": f"{self.html_url}/commit/{sha}",
            "comments_url": f"{api}/commits/{sha}/comments",
            "commit": {
                "author": self._git_user(commit.author, commit.timestamp),
                "committer": {
                    "name": "GitHub",
                    "email": "noreply@github.com",
                    "date": iso(commit.timestamp),
                },
                "message": commit.message,
                "tree": {"sha": tree, "url": f"{api}/git/trees/{tree}"},
                "url": f"{api}/git/commits/{sha}",
                "comment_count": 0,
                "verification": {
                    "verified": False,
                    "reason": "unsigned",
                    "signature": None,
                    "payload": None,
                    "verified_at": None,
                },
            },
            "author": self._fake.user_json(commit.author),
            "committer": self._fake.user_json("web-flow"),
            "parents": [
                {"sha": p, "url": f"{api}/commits/{p}", "html_url": f"{self.html_url}/commit/{p}"}
                for p in parents
            ],
        }

    def _file_json(self, entry: JSON, head: str) -> JSON:
        filename = entry["filename"]
        additions = int(entry.get("additions", 0))
        deletions = int(entry.get("deletions", 0))
        doc: JSON = {
            "sha": entry.get("sha") or _hex("blob", head, filename),
            "filename": filename,
            "status": entry["status"],
            "additions": additions,
            "deletions": deletions,
            "changes": int(entry.get("changes", additions + deletions)),
            "blob_url": f"{self.html_url}/blob/{head}/{quote(filename)}",
            "raw_url": f"{self.html_url}/raw/{head}/{quote(filename)}",
            "contents_url": f"{self.api_url}/contents/{quote(filename)}?ref={head}",
        }
        if "patch" in entry:
            doc["patch"] = entry["patch"]
        if entry.get("previous_filename"):
            doc["previous_filename"] = entry["previous_filename"]
        return doc

    @staticmethod
    def _apply_change(net: dict[str, JSON], change: JSON) -> None:
        name = change["filename"]
        status = change["status"]
        prev = net.pop(name, None)
        merged = dict(change)
        if prev is not None:
            for count in ("additions", "deletions"):
                merged[count] = int(prev.get(count, 0)) + int(change.get(count, 0))
            merged.pop("changes", None)
        if status == "renamed":
            older = net.pop(change["previous_filename"], None)
            if older is not None and older["status"] == "added":
                merged["status"] = "added"
                merged.pop("previous_filename", None)
            elif older is not None and older["status"] == "renamed":
                merged["previous_filename"] = older["previous_filename"]
            net[name] = merged
            return
        previous = prev["status"] if prev is not None else None
        if previous == "added":
            if status != "removed":  # added then removed: no change at all
                net[name] = {**merged, "status": "added"}
        elif previous == "removed" and status == "added":
            net[name] = {**merged, "status": "modified"}
        elif previous == "renamed" and prev is not None:
            if status == "removed":  # renamed then removed: the old name is gone
                old = prev["previous_filename"]
                net[old] = {"filename": old, "status": "removed"}
            else:
                net[name] = {
                    **merged,
                    "status": "renamed",
                    "previous_filename": prev["previous_filename"],
                }
        else:
            net[name] = merged

    @classmethod
    def _net_files(cls, commits: list[_Commit]) -> list[JSON]:
        """The net change of consecutive commits, like a diff of their ends.

        Added then modified is added, added then removed disappears, removed then added is
        modified, renames follow the file; additions/deletions add up.
        """
        net: dict[str, JSON] = {}
        for commit in commits:
            for change in commit.files:
                cls._apply_change(net, change)
        return [net[name] for name in sorted(net)]

    def _comparison(self, base_ref: str, head_ref: str) -> JSON:
        base = self.resolve(base_ref)
        head = self.resolve(head_ref)
        if base is None or head is None:
            raise _not_found()
        head_chain = self._chain(head)
        base_chain = self._chain(base)
        if base == head:
            status, merge_base, ahead, behind = "identical", base, 0, 0
        elif base in head_chain:
            status, merge_base = "ahead", base
            ahead, behind = head_chain.index(base), 0
        elif head in base_chain:
            status, merge_base = "behind", head
            ahead, behind = 0, base_chain.index(head)
        else:
            base_set = set(base_chain)
            common = next((sha for sha in head_chain if sha in base_set), None)
            if common is None:
                raise GitHubError(404, f"No common ancestor between {base_ref} and {head_ref}.")
            status, merge_base = "diverged", common
            ahead, behind = head_chain.index(common), base_chain.index(common)
        commits = [self._commits[sha] for sha in reversed(head_chain[:ahead])]
        return {
            "base": base,
            "head": head,
            "status": status,
            "merge_base": merge_base,
            "ahead_by": ahead,
            "behind_by": behind,
            "commits": commits,
            "files": self._net_files(commits),
        }

    def changed_file_count(self, base: str, head: str) -> int:
        """How many files really changed between base and head (compare caps at 300)."""
        with self._lock:
            return len(self._comparison(base, head)["files"])

    # ----------------------------------------------------------------------- contents

    def set_file(self, path: str, content: str, *, ref: str) -> None:
        """Make `path` hold `content` at `ref` (a branch name or a commit SHA)."""
        with self._lock:
            self._files[(ref, path.strip("/"))] = content.encode()

    def _lookup_file(self, path: str, ref: str) -> bytes | None:
        if (ref, path) in self._files:
            return self._files[(ref, path)]
        sha = self.resolve(ref)
        if sha is None:
            return None
        for name, tip in self._branches.items():
            if tip == sha and (name, path) in self._files:
                return self._files[(name, path)]
        for current in self._chain(sha):
            if (current, path) in self._files:
                return self._files[(current, path)]
            for change in self._commits[current].files:
                gone = change["status"] == "removed" and change["filename"] == path
                if gone or change.get("previous_filename") == path:
                    return None
        return None

    # ---------------------------------------------------------------------- workflows

    def add_workflow(
        self,
        file_name: str,
        *,
        name: str,
        workflow_id: int,
        run_name_template: str = "Deploy {sha}",
        inputs: Mapping[str, bool] | None = None,
    ) -> None:
        """A workflow with a workflow_dispatch trigger.

        `run_name_template` stands for the workflow's `run-name`: `{input}` placeholders are
        replaced by the dispatch inputs; if one is missing the title is the workflow name.
        `inputs` (name -> required) declares the dispatch inputs; None accepts any.
        """
        with self._lock:
            self._workflows[workflow_id] = _Workflow(
                workflow_id=workflow_id,
                file_name=file_name,
                name=name,
                run_name_template=run_name_template,
                inputs=dict(inputs) if inputs is not None else None,
                created_at=time.time(),
            )

    def _workflow(self, key: str) -> _Workflow:
        for workflow in self._workflows.values():
            if key in (str(workflow.workflow_id), workflow.file_name):
                return workflow
        raise _not_found()

    def _workflow_json(self, workflow: _Workflow) -> JSON:
        return {
            "id": workflow.workflow_id,
            "node_id": _node_id("Workflow", workflow.workflow_id),
            "name": workflow.name,
            "path": workflow.path,
            "state": "active",
            "created_at": iso(workflow.created_at),
            "updated_at": iso(workflow.created_at),
            "url": f"{self.api_url}/actions/workflows/{workflow.workflow_id}",
            "html_url": f"{self.html_url}/blob/{self.default_branch}/{workflow.path}",
            "badge_url": f"{self.html_url}/workflows/{quote(workflow.name)}/badge.svg",
        }

    def run_json(self, run_id: int) -> JSON:
        with self._lock:
            run = self._runs[run_id]
            workflow = self._workflows[run.workflow_id]
            api = self.api_url
            commit = self._commits.get(run.head_sha)
            run_url = f"{api}/actions/runs/{run.run_id}"
            suite = run.run_id * 7 + 3
            head_commit = None
            if commit is not None:
                head_commit = {
                    "id": commit.sha,
                    "tree_id": _hex("tree", commit.sha),
                    "message": commit.message,
                    "timestamp": iso(commit.timestamp),
                    "author": {
                        "name": commit.author,
                        "email": f"{commit.author}@users.noreply.github.com",
                    },
                    "committer": {"name": "GitHub", "email": "noreply@github.com"},
                }
            return {
                "id": run.run_id,
                "name": workflow.name,
                "node_id": _node_id("WorkflowRun", run.run_id),
                "head_branch": run.head_branch,
                "head_sha": run.head_sha,
                "path": workflow.path,
                "display_title": run.display_title,
                "run_number": run.run_number,
                "event": run.event,
                "status": run.status,
                "conclusion": run.conclusion,
                "workflow_id": workflow.workflow_id,
                "check_suite_id": suite,
                "check_suite_node_id": _node_id("CheckSuite", suite),
                "url": run_url,
                "html_url": f"{self.html_url}/actions/runs/{run.run_id}",
                "pull_requests": [],
                "created_at": iso(run.created_at),
                "updated_at": iso(run.updated_at),
                "actor": self._fake.user_json(run.actor),
                "run_attempt": run.run_attempt,
                "referenced_workflows": [],
                "run_started_at": iso(run.run_started_at),
                "triggering_actor": self._fake.user_json(run.triggering_actor),
                "jobs_url": f"{run_url}/jobs",
                "logs_url": f"{run_url}/logs",
                "check_suite_url": f"{api}/check-suites/{suite}",
                "artifacts_url": f"{run_url}/artifacts",
                "cancel_url": f"{run_url}/cancel",
                "rerun_url": f"{run_url}/rerun",
                "previous_attempt_url": (
                    f"{run_url}/attempts/{run.run_attempt - 1}" if run.run_attempt > 1 else None
                ),
                "workflow_url": f"{api}/actions/workflows/{workflow.workflow_id}",
                "head_commit": head_commit,
                "repository": self.repo_json(minimal=True),
                "head_repository": self.repo_json(minimal=True),
            }

    def dispatched_runs(self, workflow_file: str) -> list[JSON]:
        """Runs created by dispatches of that workflow (API or person), oldest first.

        Each is the run as the API shows it plus `inputs` (the dispatch inputs, which the
        run object on GitHub does not carry).
        """
        with self._lock:
            workflow = self._workflow(workflow_file)
            return [
                {**self.run_json(run.run_id), "inputs": dict(run.inputs)}
                for run in sorted(self._runs.values(), key=lambda r: r.run_id)
                if run.workflow_id == workflow.workflow_id and run.event == "workflow_dispatch"
            ]

    def _run_payload(self, run_id: int, action: str, sender: str | None) -> JSON:
        run = self._runs[run_id]
        return {
            "action": action,
            "workflow_run": self.run_json(run_id),
            "workflow": self._workflow_json(self._workflows[run.workflow_id]),
            "repository": self.repo_json(),
            "organization": self._organization_json(),
            "installation": self._installation_ref(),
            "sender": self._fake.user_json(sender or run.triggering_actor),
        }

    def _new_run(
        self,
        workflow: _Workflow,
        *,
        event: str,
        actor: str,
        head_branch: str,
        head_sha: str,
        display_title: str,
        inputs: Mapping[str, Any],
    ) -> int:
        run_id = self._fake.next_run_id()
        number = self._run_numbers.get(workflow.workflow_id, 0) + 1
        self._run_numbers[workflow.workflow_id] = number
        now = time.time()
        self._runs[run_id] = _Run(
            run_id=run_id,
            workflow_id=workflow.workflow_id,
            run_number=number,
            display_title=display_title,
            head_branch=head_branch,
            head_sha=head_sha,
            inputs=dict(inputs),
            actor=actor,
            triggering_actor=actor,
            event=event,
            created_at=now,
            updated_at=now,
            run_started_at=now,
        )
        self._runs_by_workflow.setdefault(workflow.workflow_id, []).append(run_id)
        return run_id

    def _dispatch(
        self, workflow: _Workflow, ref: str, inputs: Mapping[str, Any], actor: str
    ) -> int:
        """The run a workflow_dispatch creates, refused with 422 the way GitHub refuses it.

        head_sha is the branch's tip; the title is the workflow's run-name with the inputs.
        """
        branch = ref.removeprefix("refs/heads/")
        if _SHA.match(ref) or branch not in self._branches:
            raise GitHubError(422, f"No ref found for: {ref}")
        if workflow.inputs is not None:
            unexpected = sorted(set(inputs) - set(workflow.inputs))
            if unexpected:
                raise GitHubError(422, f"Unexpected inputs provided: {json.dumps(unexpected)}")
            for name, required in workflow.inputs.items():
                if required and name not in inputs:
                    raise GitHubError(422, f"Required input '{name}' not provided")
        values = {k: str(v) for k, v in inputs.items()}
        placeholders = _PLACEHOLDER.findall(workflow.run_name_template)
        if all(name in values for name in placeholders):
            title = _PLACEHOLDER.sub(lambda m: values[m.group(1)], workflow.run_name_template)
        else:
            title = workflow.name
        return self._new_run(
            workflow,
            event="workflow_dispatch",
            actor=actor,
            head_branch=branch,
            head_sha=self._branches[branch],
            display_title=title or workflow.name,
            inputs=inputs,
        )

    def start_manual_run(
        self, workflow_file: str, *, actor: str, ref: str, inputs: dict[str, str]
    ) -> int:
        """`actor` presses "Run workflow" on branch `ref`; returns the new run's id.

        The same run (and the same 422 refusals, raised as GitHubError) as a dispatch
        through the API, except that the run's actor and triggering actor are that person.
        """
        with self._lock:
            return self._dispatch(self._workflow(workflow_file), ref, inputs, actor)

    def add_run(
        self,
        workflow_file: str,
        *,
        event: str,
        actor: str,
        head_branch: str,
        head_sha: str,
        display_title: str,
    ) -> int:
        """A queued run of that workflow triggered by `event` (e.g. push); returns its id."""
        with self._lock:
            return self._new_run(
                self._workflow(workflow_file),
                event=event,
                actor=actor,
                head_branch=head_branch,
                head_sha=head_sha,
                display_title=display_title,
                inputs={},
            )

    def add_completed_run(
        self,
        workflow_file: str,
        *,
        head_sha: str,
        event: str = "push",
        conclusion: str = "success",
        head_branch: str | None = None,
        actor: str = "octocat",
        display_title: str | None = None,
    ) -> int:
        """A run that already finished (default: a successful `push` run on the default branch).

        Nothing is delivered: this is a run whose `workflow_run` webhooks never arrived, as
        when deliveries were dropped. The list-workflow-runs API shows it; returns its id.
        """
        if conclusion not in RUN_CONCLUSIONS:
            raise ValueError(f"not a run conclusion: {conclusion!r}")
        with self._lock:
            run_id = self._new_run(
                self._workflow(workflow_file),
                event=event,
                actor=actor,
                head_branch=head_branch or self.default_branch,
                head_sha=head_sha,
                display_title=display_title or f"Run on {head_sha[:7]}",
                inputs={},
            )
            run = self._runs[run_id]
            run.status, run.conclusion = "completed", conclusion
            return run_id

    def rerun(self, run_id: int, *, actor: str | None = None) -> int:
        """Re-run a completed run (same id, next attempt); returns the new attempt number.

        The run is queued again. `actor`, if given, is who pressed "Re-run": the run's
        triggering actor from now on; the run's actor stays who started it first.
        """
        with self._lock:
            run = self._runs[run_id]
            if run.status != "completed":
                raise ValueError(f"run {run_id} is {run.status}: only a completed run re-runs")
            run.run_attempt += 1
            run.status, run.conclusion = "queued", None
            run.updated_at = run.run_started_at = time.time()
            if actor is not None:
                run.triggering_actor = actor
            return run.run_attempt

    def start_run(self, run_id: int) -> JSON:
        """Move a queued run to in_progress; returns the `workflow_run` in_progress payload."""
        with self._lock:
            run = self._runs[run_id]
            run.status, run.updated_at = "in_progress", time.time()
            return self._run_payload(run_id, "in_progress", None)

    def complete_run(self, run_id: int, conclusion: str, *, sender: str | None = None) -> JSON:
        """Finish a run; returns the `workflow_run` completed webhook payload to send."""
        if conclusion not in RUN_CONCLUSIONS:
            raise ValueError(f"not a run conclusion: {conclusion!r}")
        with self._lock:
            run = self._runs[run_id]
            run.status, run.conclusion, run.updated_at = "completed", conclusion, time.time()
            return self._run_payload(run_id, "completed", sender)

    def gate_reviews(self) -> list[JSON]:
        """Reviews posted to actions/review-custom-gates-for-run, in order.

        Each is `{"run_id", "run_attempt", "environment_name", "state", "comment"}`; `state`
        is None for a comment-only review, `comment` None when the review had none.
        """
        with self._lock:
            return [dict(review) for review in self._gate_reviews]

    def gate_review(self, run_id: int, attempt: int | None = None) -> JSON | None:
        """The latest review of that run's attempt (default: its current one), or None."""
        with self._lock:
            wanted = attempt if attempt is not None else self._runs[run_id].run_attempt
            found = [
                r for r in self._gate_reviews if (r["run_id"], r["run_attempt"]) == (run_id, wanted)
            ]
            return dict(found[-1]) if found else None

    def protection_request_payload(self, run_id: int, *, environment: str = "production") -> JSON:
        """The `deployment_protection_rule` requested payload for that run's current attempt.

        What GitHub sends the app when the run's job declaring `environment:` starts: the
        deployment is of the run's head (branch tip at dispatch, not any sha input), created
        by the run's triggering actor; the review goes to `deployment_callback_url`.
        """
        with self._lock:
            run = self._runs[run_id]
            api = self.api_url
            deployment_id = self._fake.next_id("deployment")
            now = iso(time.time())
            return {
                "action": "requested",
                "environment": environment,
                "event": run.event,
                "deployment_callback_url": (
                    f"{api}/actions/runs/{run_id}/deployment_protection_rule"
                ),
                "deployment": {
                    "url": f"{api}/deployments/{deployment_id}",
                    "id": deployment_id,
                    "node_id": _node_id("Deployment", deployment_id),
                    "task": "deploy",
                    "original_environment": environment,
                    "environment": environment,
                    "description": None,
                    "created_at": now,
                    "updated_at": now,
                    "statuses_url": f"{api}/deployments/{deployment_id}/statuses",
                    "repository_url": api,
                    "creator": self._fake.user_json(run.triggering_actor),
                    "sha": run.head_sha,
                    "ref": run.head_branch,
                    "payload": {},
                },
                "pull_requests": [],
                "repository": self.repo_json(),
                "organization": self._organization_json(),
                "installation": self._installation_ref(),
                "sender": self._fake.user_json(run.triggering_actor),
            }

    # ----------------------------------------------------------------------- statuses

    def statuses(self, sha: str) -> list[JSON]:
        """Commit statuses created on `sha`, oldest first (the API lists newest first)."""
        with self._lock:
            return [dict(status) for status in self._statuses.get(sha, [])]

    # -------------------------------------------------------------------- pulls/issues

    def _label_json(self, name: str) -> JSON:
        key = name.lower()
        if key not in self._labels:
            label_id = self._fake.next_id("label")
            self._labels[key] = {
                "id": label_id,
                "node_id": _node_id("Label", label_id),
                "url": f"{self.api_url}/labels/{quote(name)}",
                "name": name,
                "color": _hex("color", key)[:6],
                "default": False,
                "description": "",
            }
        return dict(self._labels[key])

    def _next_number(self) -> int:
        return max(self._issues, default=0) + 1

    def add_pull(
        self,
        number: int,
        *,
        user: str,
        head_sha: str,
        merge_commit_sha: str | None,
        labels: Sequence[str] = (),
        title: str | None = None,
        body: str | None = None,
        head_ref: str | None = None,
        base_ref: str | None = None,
        merged: bool | None = None,
    ) -> None:
        """A pull request; merged (and closed) when merge_commit_sha is given."""
        with self._lock:
            if number in self._issues:
                raise ValueError(f"#{number} already exists")
            is_merged = merge_commit_sha is not None if merged is None else merged
            now = time.time()
            self._issues[number] = _Issue(
                number=number,
                issue_id=self._fake.next_id("issue"),
                title=title or f"Pull request {number}",
                body=body,
                user=user,
                labels=[self._label_json(label)["name"] for label in labels],
                created_at=now,
                updated_at=now,
                state="closed" if is_merged else "open",
                closed_at=now if is_merged else None,
                pull=_Pull(
                    pull_id=self._fake.next_id("pull"),
                    head_sha=head_sha,
                    head_ref=head_ref or f"change-{number}",
                    base_ref=base_ref or self.default_branch,
                    merge_commit_sha=merge_commit_sha,
                    merged=is_merged,
                ),
            )

    def _author_association(self, login: str) -> str:
        if login.lower() == self.owner.lower():
            return "OWNER"
        role = self._permissions.get(login.lower())
        if role is not None and role[1] != "none":
            return "COLLABORATOR"
        return "NONE"

    def _pull_json(self, issue: _Issue, *, full: bool) -> JSON:
        pull = issue.pull
        assert pull is not None
        api = self.api_url
        number = issue.number
        pull_api = f"{api}/pulls/{number}"
        html = f"{self.html_url}/pull/{number}"
        base_sha = self._branches.get(pull.base_ref) or pull.head_sha
        if pull.merge_commit_sha in self._commits:
            base_sha = self._commits[pull.merge_commit_sha].parent or base_sha
        owner = self._owner_json()
        repo = self.repo_json()
        doc: JSON = {
            "url": pull_api,
            "id": pull.pull_id,
            "node_id": _node_id("PullRequest", pull.pull_id),
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": f"{api}/issues/{number}",
            "commits_url": f"{pull_api}/commits",
            "review_comments_url": f"{pull_api}/comments",
            "review_comment_url": f"{api}/pulls/comments{{/number}}",
            "comments_url": f"{api}/issues/{number}/comments",
            "statuses_url": f"{api}/statuses/{pull.head_sha}",
            "number": number,
            "state": issue.state,
            "locked": False,
            "title": issue.title,
            "user": self._fake.user_json(issue.user),
            "body": issue.body,
            "labels": [self._label_json(label) for label in issue.labels],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": iso(issue.created_at),
            "updated_at": iso(issue.updated_at),
            "closed_at": iso(issue.closed_at) if issue.closed_at else None,
            "merged_at": iso(issue.closed_at) if pull.merged and issue.closed_at else None,
            "merge_commit_sha": pull.merge_commit_sha,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": {
                "label": f"{self.owner}:{pull.head_ref}",
                "ref": pull.head_ref,
                "sha": pull.head_sha,
                "user": owner,
                "repo": repo,
            },
            "base": {
                "label": f"{self.owner}:{pull.base_ref}",
                "ref": pull.base_ref,
                "sha": base_sha,
                "user": owner,
                "repo": repo,
            },
            "_links": {
                "self": {"href": pull_api},
                "html": {"href": html},
                "issue": {"href": f"{api}/issues/{number}"},
                "comments": {"href": f"{api}/issues/{number}/comments"},
                "review_comments": {"href": f"{pull_api}/comments"},
                "review_comment": {"href": f"{api}/pulls/comments{{/number}}"},
                "commits": {"href": f"{pull_api}/commits"},
                "statuses": {"href": f"{api}/statuses/{pull.head_sha}"},
            },
            "author_association": self._author_association(issue.user),
            "auto_merge": None,
            "draft": False,
        }
        if full:
            doc.update(
                {
                    "merged": pull.merged,
                    "mergeable": None if issue.state == "closed" else True,
                    "rebaseable": None if issue.state == "closed" else True,
                    "mergeable_state": "unknown" if issue.state == "closed" else "clean",
                    "merged_by": self._fake.user_json(issue.user) if pull.merged else None,
                    "comments": len(self._comments.get(number, [])),
                    "review_comments": 0,
                    "maintainer_can_modify": False,
                    "commits": 1,
                    "additions": 0,
                    "deletions": 0,
                    "changed_files": 0,
                }
            )
        return doc

    def _issue_json(self, issue: _Issue) -> JSON:
        api = self.api_url
        number = issue.number
        kind = "pull" if issue.pull is not None else "issues"
        doc: JSON = {
            "url": f"{api}/issues/{number}",
            "repository_url": api,
            "labels_url": f"{api}/issues/{number}/labels{{/name}}",
            "comments_url": f"{api}/issues/{number}/comments",
            "events_url": f"{api}/issues/{number}/events",
            "html_url": f"{self.html_url}/{kind}/{number}",
            "id": issue.issue_id,
            "node_id": _node_id("Issue", issue.issue_id),
            "number": number,
            "title": issue.title,
            "user": self._fake.user_json(issue.user),
            "labels": [self._label_json(label) for label in issue.labels],
            "state": issue.state,
            "state_reason": "completed" if issue.state == "closed" else None,
            "locked": False,
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "comments": len(self._comments.get(number, [])),
            "created_at": iso(issue.created_at),
            "updated_at": iso(issue.updated_at),
            "closed_at": iso(issue.closed_at) if issue.closed_at else None,
            "active_lock_reason": None,
            "author_association": self._author_association(issue.user),
            "body": issue.body,
            "closed_by": None,
        }
        if issue.pull is not None:
            html = f"{self.html_url}/pull/{number}"
            merged_at = issue.closed_at if issue.pull.merged else None
            doc["pull_request"] = {
                "url": f"{api}/pulls/{number}",
                "html_url": html,
                "diff_url": f"{html}.diff",
                "patch_url": f"{html}.patch",
                "merged_at": iso(merged_at) if merged_at else None,
            }
        return doc

    def _issue(self, number: int) -> _Issue:
        issue = self._issues.get(number)
        if issue is None:
            raise _not_found()
        return issue

    def _create_issue(self, title: str, body: str | None, labels: Sequence[str], user: str) -> JSON:
        now = time.time()
        issue = _Issue(
            number=self._next_number(),
            issue_id=self._fake.next_id("issue"),
            title=title,
            body=body,
            user=user,
            labels=[],
            created_at=now,
            updated_at=now,
        )
        for label in labels:
            name = self._label_json(label)["name"]
            if name not in issue.labels:
                issue.labels.append(name)
        self._issues[issue.number] = issue
        return self._issue_json(issue)

    def open_issue(
        self,
        title: str,
        labels: Sequence[str] = (),
        *,
        body: str | None = None,
        user: str = "octocat",
    ) -> JSON:
        """An open issue created by `user` (e.g. a degraded-production issue)."""
        with self._lock:
            return self._create_issue(title, body, labels, user)

    def close_issue(self, number: int) -> None:
        with self._lock:
            issue = self._issue(number)
            issue.state, issue.closed_at = "closed", time.time()
            issue.updated_at = issue.closed_at

    def issues(self) -> list[JSON]:
        """The issues (not pull requests), oldest first."""
        with self._lock:
            return [
                self._issue_json(issue)
                for number, issue in sorted(self._issues.items())
                if issue.pull is None
            ]

    def _add_comment(self, number: int, body: str, user: str) -> JSON:
        issue = self._issue(number)
        comment_id = self._fake.next_id("comment")
        now = time.time()
        kind = "pull" if issue.pull is not None else "issues"
        comment = {
            "id": comment_id,
            "node_id": _node_id("IssueComment", comment_id),
            "url": f"{self.api_url}/issues/comments/{comment_id}",
            "html_url": f"{self.html_url}/{kind}/{number}#issuecomment-{comment_id}",
            "body": body,
            "user": self._fake.user_json(user),
            "created_at": iso(now),
            "updated_at": iso(now),
            "issue_url": f"{self.api_url}/issues/{number}",
            "author_association": self._author_association(user),
            "performed_via_github_app": None,
        }
        self._comments.setdefault(number, []).append(comment)
        issue.updated_at = now
        return dict(comment)

    def comments(self, number: int) -> list[JSON]:
        """Comments on issue or pull request `number`, oldest first."""
        with self._lock:
            return [dict(comment) for comment in self._comments.get(number, [])]

    def label_added_payload(self, number: int, label: str, sender: str) -> JSON:
        """Put `label` on pull request `number`; returns the `pull_request` labeled payload."""
        with self._lock:
            issue = self._issue(number)
            if issue.pull is None:
                raise ValueError(f"#{number} is not a pull request")
            label_json = self._label_json(label)
            if label_json["name"] not in issue.labels:
                issue.labels.append(label_json["name"])
            issue.updated_at = time.time()
            return {
                "action": "labeled",
                "number": number,
                "pull_request": self._pull_json(issue, full=True),
                "label": label_json,
                "repository": self.repo_json(),
                "organization": self._organization_json(),
                "installation": self._installation_ref(),
                "sender": self._fake.user_json(sender),
            }

    def comment_payload(self, number: int, body: str, sender: str) -> JSON:
        """Comment on issue/PR `number`; returns the `issue_comment` created payload."""
        with self._lock:
            comment = self._add_comment(number, body, sender)
            return {
                "action": "created",
                "issue": self._issue_json(self._issue(number)),
                "comment": comment,
                "repository": self.repo_json(),
                "organization": self._organization_json(),
                "installation": self._installation_ref(),
                "sender": self._fake.user_json(sender),
            }

    # -------------------------------------------------------------------- permissions

    def set_permission(self, username: str, permission: str) -> None:
        """Role of `username`: admin, maintain, write, triage, read or none."""
        if permission not in ROLE_TO_LEGACY:
            raise ValueError(f"not a repository role: {permission!r}")
        with self._lock:
            self._permissions[username.lower()] = (username, permission)

    # ====================================================================== handlers

    def _h_get_repo(self, req: _Request) -> _Answer:
        return _Answer(200, self.repo_json())

    def _h_get_content(self, req: _Request) -> _Answer:
        path = req.op.path_params["path"].strip("/")
        ref = req.q("ref") or self.default_branch
        content = self._lookup_file(path, ref)
        if content is None:
            raise _not_found()
        sha = git_blob_sha(content)
        url = f"{self.api_url}/contents/{quote(path)}?ref={quote(ref, safe='')}"
        git_url = f"{self.api_url}/git/blobs/{sha}"
        html = f"{self.html_url}/blob/{quote(ref)}/{quote(path)}"
        too_big = len(content) > 1_000_000  # GitHub sends no content for files over 1 MB
        return _Answer(
            200,
            {
                "type": "file",
                "encoding": "none" if too_big else "base64",
                "size": len(content),
                "name": path.rsplit("/", 1)[-1],
                "path": path,
                "content": "" if too_big else github_base64(content),
                "sha": sha,
                "url": url,
                "git_url": git_url,
                "html_url": html,
                "download_url": f"https://raw.githubusercontent.com/{self.full_name}/{ref}/{path}",
                "_links": {"self": url, "git": git_url, "html": html},
            },
        )

    def _h_compare(self, req: _Request) -> _Answer:
        """Compare BASE...HEAD; `commits` is paginated (Link header), `files` is not.

        The (net, sorted, at most 300) `files` list comes with page 1 only; later pages
        carry `files: []`. GitHub repeats the files on every page; a client that reads
        files from the first page, as it should, sees no difference.
        """
        basehead = req.op.path_params["basehead"]
        if "..." not in basehead:
            raise _not_found()
        base_ref, head_ref = basehead.split("...", 1)
        cmp = self._comparison(base_ref, head_ref)
        # Without per_page GitHub lists up to 250 commits; an explicit per_page caps at 100.
        page_items, links, page = self._fake.paginate(
            req,
            cmp["commits"],
            default_per_page=COMPARE_DEFAULT_COMMITS,
            max_per_page=100 if req.q("per_page") is not None else COMPARE_DEFAULT_COMMITS,
        )
        files = cmp["files"][:MAX_COMPARE_FILES] if page == 1 else []
        compare_url = f"{self.api_url}/compare/{basehead}"
        html = f"{self.html_url}/compare/{basehead}"
        return _Answer(
            200,
            {
                "url": compare_url,
                "html_url": html,
                "permalink_url": (
                    f"{self.html_url}/compare/{self.owner}:{cmp['base'][:7]}"
                    f"...{self.owner}:{cmp['head'][:7]}"
                ),
                "diff_url": f"{html}.diff",
                "patch_url": f"{html}.patch",
                "base_commit": self.commit_json(cmp["base"]),
                "merge_base_commit": self.commit_json(cmp["merge_base"]),
                "status": cmp["status"],
                "ahead_by": cmp["ahead_by"],
                "behind_by": cmp["behind_by"],
                "total_commits": cmp["ahead_by"],
                "commits": [self.commit_json(c.sha) for c in page_items],
                "files": [self._file_json(f, cmp["head"]) for f in files],
            },
            links,
        )

    def _h_get_commit(self, req: _Request) -> _Answer:
        ref = req.op.path_params["ref"]
        sha = self.resolve(ref)
        if sha is None:
            raise GitHubError(422, f"No commit found for SHA: {ref}")
        commit = self._commits[sha]
        files = self._net_files([commit])[:MAX_COMPARE_FILES]
        additions = sum(int(f.get("additions", 0)) for f in files)
        deletions = sum(int(f.get("deletions", 0)) for f in files)
        return _Answer(
            200,
            {
                **self.commit_json(sha),
                "stats": {
                    "total": additions + deletions,
                    "additions": additions,
                    "deletions": deletions,
                },
                "files": [self._file_json(f, sha) for f in files],
            },
        )

    def _h_get_branch(self, req: _Request) -> _Answer:
        name = req.op.path_params["branch"]
        sha = self._branches.get(name)
        if sha is None:
            raise GitHubError(404, "Branch not found")
        api = self.api_url
        return _Answer(
            200,
            {
                "name": name,
                "commit": self.commit_json(sha),
                "_links": {
                    "self": f"{api}/branches/{quote(name, safe='')}",
                    "html": f"{self.html_url}/tree/{name}",
                },
                "protected": False,
                "protection": {
                    "enabled": False,
                    "required_status_checks": {
                        "enforcement_level": "off",
                        "contexts": [],
                        "checks": [],
                    },
                },
                "protection_url": f"{api}/branches/{quote(name, safe='')}/protection",
            },
        )

    def _h_get_workflow(self, req: _Request) -> _Answer:
        return _Answer(200, self._workflow_json(self._workflow(req.op.path_params["workflow_id"])))

    def _h_dispatch(self, req: _Request) -> _Answer:
        workflow = self._workflow(req.op.path_params["workflow_id"])
        body = cast(JSON, req.body)
        inputs = dict(body.get("inputs") or {})
        run_id = self._dispatch(workflow, str(body["ref"]), inputs, self._fake.bot_login)
        if body.get("return_run_details") is True:
            return _Answer(
                200,
                {
                    "workflow_run_id": run_id,
                    "run_url": f"{self.api_url}/actions/runs/{run_id}",
                    "html_url": f"{self.html_url}/actions/runs/{run_id}",
                },
            )
        return _Answer(204)

    def _h_list_runs(self, req: _Request) -> _Answer:
        """A workflow's runs, newest first, filtered like GitHub filters them.

        `status` matches the run's status (`queued`, `in_progress`, `completed`, ...) or its
        conclusion (`success`, `failure`, ...); `created` takes the search syntax
        (`>=2024-05-01`, `<2024-05-01T12:00:00Z`, `2024-05-01..2024-05-02`, a bare date for
        that day). Only the runs of that workflow are looked at, not the repository's.
        """
        workflow = self._workflow(req.op.path_params["workflow_id"])
        ids = self._runs_by_workflow.get(workflow.workflow_id, [])
        runs = [self._runs[run_id] for run_id in reversed(ids)]  # newest first
        if (event := req.q("event")) is not None:
            runs = [r for r in runs if r.event == event]
        if (branch := req.q("branch")) is not None:
            runs = [r for r in runs if r.head_branch == branch]
        if (head_sha := req.q("head_sha")) is not None:
            runs = [r for r in runs if r.head_sha == head_sha]
        if (actor := req.q("actor")) is not None:
            runs = [r for r in runs if r.actor.lower() == actor.lower()]
        if (status := req.q("status")) is not None:
            runs = [r for r in runs if status in (r.status, r.conclusion)]
        if (suite := req.q("check_suite_id")) is not None:
            runs = [r for r in runs if str(r.run_id * 7 + 3) == suite]
        if (created := req.q("created")) is not None:
            low, high = _created_range(created)
            runs = [r for r in runs if low <= r.created_at < high]
        page_items, links, _ = self._fake.paginate(req, runs)
        return _Answer(
            200,
            {
                "total_count": len(runs),
                "workflow_runs": [self.run_json(r.run_id) for r in page_items],
            },
            links,
        )

    def _h_get_run(self, req: _Request) -> _Answer:
        run_id = int(req.op.path_params["run_id"])
        if run_id not in self._runs:
            raise _not_found()
        return _Answer(200, self.run_json(run_id))

    def _h_review_gates(self, req: _Request) -> _Answer:
        """Review a run's custom deployment protection rule, as its callback URL does.

        A review with a `state` decides the gate of that run attempt and environment, once;
        a comment-only review (no `state`) is recorded and leaves the gate pending.
        """
        run_id = int(req.op.path_params["run_id"])
        run = self._runs.get(run_id)
        if run is None:
            raise _not_found()
        body = cast(JSON, req.body)
        environment = str(body["environment_name"])
        if any(
            (r["run_id"], r["run_attempt"], r["environment_name"])
            == (run_id, run.run_attempt, environment)
            and r["state"] is not None
            for r in self._gate_reviews
        ):
            raise GitHubError(
                422,
                f"The deployment protection rule for environment '{environment}' has already "
                "been reviewed for this workflow run attempt.",
            )
        self._gate_reviews.append(
            {
                "run_id": run_id,
                "run_attempt": run.run_attempt,
                "environment_name": environment,
                "state": body.get("state"),
                "comment": body.get("comment"),
            }
        )
        return _Answer(204)

    def _status_json(self, sha: str, body: JSON, status_id: int, now: float) -> JSON:
        bot = self._fake.user_json(self._fake.bot_login)
        return {
            "url": f"{self.api_url}/statuses/{sha}",
            "avatar_url": bot["avatar_url"],
            "id": status_id,
            "node_id": _node_id("StatusContext", status_id),
            "state": body["state"],
            "description": body.get("description"),
            "target_url": body.get("target_url"),
            "context": body.get("context") or "default",
            "created_at": iso(now),
            "updated_at": iso(now),
            "creator": bot,
        }

    def _h_create_status(self, req: _Request) -> _Answer:
        sha = req.op.path_params["sha"]
        body = cast(JSON, req.body)
        errors: list[JSON] = []
        if body.get("state") not in STATUS_STATES:
            errors.append(
                {
                    "resource": "Status",
                    "code": "custom",
                    "field": "state",
                    "message": f"state is not included in the list: {body.get('state')}",
                }
            )
        description = body.get("description")
        if isinstance(description, str) and len(description) > 140:
            errors.append(
                {
                    "resource": "Status",
                    "code": "custom",
                    "field": "description",
                    "message": "description is too long (maximum is 140 characters)",
                }
            )
        if errors:
            raise GitHubError(422, "Validation Failed", errors=errors)
        if sha not in self._commits:
            raise GitHubError(422, f"No commit found for SHA: {sha}")
        status = self._status_json(sha, body, self._fake.next_id("status"), time.time())
        self._statuses.setdefault(sha, []).append(status)
        return _Answer(201, dict(status))

    def _ref_statuses(self, ref: str) -> tuple[str, list[JSON]]:
        sha = self.resolve(ref)
        if sha is None:
            raise GitHubError(404, f"No commit found for SHA: {ref}")
        return sha, list(reversed(self._statuses.get(sha, [])))

    def _h_list_statuses(self, req: _Request) -> _Answer:
        _, statuses = self._ref_statuses(req.op.path_params["ref"])
        page_items, links, _ = self._fake.paginate(req, statuses)
        return _Answer(200, [dict(s) for s in page_items], links)

    def _h_combined_status(self, req: _Request) -> _Answer:
        sha, statuses = self._ref_statuses(req.op.path_params["ref"])
        latest: dict[str, JSON] = {}
        for status in statuses:  # newest first: keep the first per context
            latest.setdefault(status["context"].lower(), status)
        states = {s["state"] for s in latest.values()}
        if states & {"error", "failure"}:
            combined = "failure"
        elif not states or "pending" in states:
            combined = "pending"
        else:
            combined = "success"
        page_items, links, _ = self._fake.paginate(req, list(latest.values()))
        return _Answer(
            200,
            {
                "state": combined,
                "sha": sha,
                "total_count": len(latest),
                "statuses": [
                    {k: v for k, v in s.items() if k != "creator"} | {"default": False}
                    for s in page_items
                ],
                "repository": self.repo_json(minimal=True),
                "commit_url": f"{self.api_url}/commits/{sha}",
                "url": f"{self.api_url}/commits/{sha}/status",
            },
            links,
        )

    def _h_pulls_for_commit(self, req: _Request) -> _Answer:
        sha = req.op.path_params["commit_sha"]
        pulls = [
            issue
            for _, issue in sorted(self._issues.items(), reverse=True)
            if issue.pull is not None and sha in (issue.pull.merge_commit_sha, issue.pull.head_sha)
        ]
        page_items, links, _ = self._fake.paginate(req, pulls)
        return _Answer(200, [self._pull_json(issue, full=False) for issue in page_items], links)

    def _h_get_pull(self, req: _Request) -> _Answer:
        issue = self._issues.get(int(req.op.path_params["pull_number"]))
        if issue is None or issue.pull is None:
            raise _not_found()
        return _Answer(200, self._pull_json(issue, full=True))

    def _h_list_issues(self, req: _Request) -> _Answer:
        items = list(self._issues.values())
        state = req.q("state") or "open"
        if state != "all":
            items = [i for i in items if i.state == state]
        if labels := req.q("labels"):
            wanted = {name.strip().lower() for name in labels.split(",") if name.strip()}
            items = [i for i in items if wanted <= {label.lower() for label in i.labels}]
        if creator := req.q("creator"):
            items = [i for i in items if i.user.lower() == creator.lower()]
        if since := req.q("since"):
            cutoff = datetime.fromisoformat(since).timestamp()
            items = [i for i in items if i.updated_at >= cutoff]
        sort = req.q("sort") or "created"
        keys: dict[str, Callable[[_Issue], tuple[float, int]]] = {
            "created": lambda i: (i.created_at, i.number),
            "updated": lambda i: (i.updated_at, i.number),
            "comments": lambda i: (len(self._comments.get(i.number, [])), i.number),
        }
        items.sort(key=keys[sort], reverse=(req.q("direction") or "desc") == "desc")
        page_items, links, _ = self._fake.paginate(req, items)
        return _Answer(200, [self._issue_json(i) for i in page_items], links)

    def _h_create_issue(self, req: _Request) -> _Answer:
        body = cast(JSON, req.body)
        labels = [
            label if isinstance(label, str) else str(label.get("name", ""))
            for label in body.get("labels") or []
        ]
        title = str(body["title"]) if "title" in body else ""
        if not title.strip():
            raise GitHubError(
                422,
                "Validation Failed",
                errors=[{"resource": "Issue", "code": "missing_field", "field": "title"}],
            )
        issue = self._create_issue(title, body.get("body"), labels, self._fake.bot_login)
        return _Answer(201, issue)

    def _h_list_comments(self, req: _Request) -> _Answer:
        number = int(req.op.path_params["issue_number"])
        self._issue(number)
        comments = list(self._comments.get(number, []))
        if since := req.q("since"):
            cutoff = datetime.fromisoformat(since).timestamp()
            comments = [
                c for c in comments if datetime.fromisoformat(c["updated_at"]).timestamp() >= cutoff
            ]
        page_items, links, _ = self._fake.paginate(req, comments)
        return _Answer(200, [dict(c) for c in page_items], links)

    def _h_create_comment(self, req: _Request) -> _Answer:
        number = int(req.op.path_params["issue_number"])
        body = cast(JSON, req.body)
        return _Answer(201, self._add_comment(number, str(body["body"]), self._fake.bot_login))

    def _h_issue_labels(self, req: _Request) -> _Answer:
        issue = self._issue(int(req.op.path_params["issue_number"]))
        labels = [self._label_json(name) for name in issue.labels]
        page_items, links, _ = self._fake.paginate(req, labels)
        return _Answer(200, page_items, links)

    def _h_permission(self, req: _Request) -> _Answer:
        username = req.op.path_params["username"]
        entry = self._permissions.get(username.lower())
        if entry is None:
            raise GitHubError(404, f"{username} is not a user")
        login, role = entry
        user = self._fake.user_json(login)
        user["permissions"] = {
            "admin": role == "admin",
            "maintain": role in ("admin", "maintain"),
            "push": role in ("admin", "maintain", "write"),
            "triage": role in ("admin", "maintain", "write", "triage"),
            "pull": role != "none",
        }
        user["role_name"] = role
        return _Answer(200, {"permission": ROLE_TO_LEGACY[role], "role_name": role, "user": user})


_REPO_HANDLERS: dict[str, Callable[[FakeRepo, _Request], _Answer]] = {
    "repos/get": FakeRepo._h_get_repo,
    "repos/get-content": FakeRepo._h_get_content,
    "repos/compare-commits-with-basehead": FakeRepo._h_compare,
    "repos/get-commit": FakeRepo._h_get_commit,
    "repos/get-branch": FakeRepo._h_get_branch,
    "actions/get-workflow": FakeRepo._h_get_workflow,
    "actions/create-workflow-dispatch": FakeRepo._h_dispatch,
    "actions/list-workflow-runs": FakeRepo._h_list_runs,
    "actions/get-workflow-run": FakeRepo._h_get_run,
    "actions/review-custom-gates-for-run": FakeRepo._h_review_gates,
    "repos/create-commit-status": FakeRepo._h_create_status,
    "repos/list-commit-statuses-for-ref": FakeRepo._h_list_statuses,
    "repos/get-combined-status-for-ref": FakeRepo._h_combined_status,
    "repos/list-pull-requests-associated-with-commit": FakeRepo._h_pulls_for_commit,
    "pulls/get": FakeRepo._h_get_pull,
    "issues/list-for-repo": FakeRepo._h_list_issues,
    "issues/create": FakeRepo._h_create_issue,
    "issues/list-comments": FakeRepo._h_list_comments,
    "issues/create-comment": FakeRepo._h_create_comment,
    "issues/list-labels-on-issue": FakeRepo._h_issue_labels,
    "repos/get-collaborator-permission-level": FakeRepo._h_permission,
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeGitHub) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server_version = "GitHub.com"
    sys_version = ""

    def _serve(self) -> None:
        cast(_Server, self.server).fake._serve(self)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names `etag` (weak comparison, or `*`)."""
    if not if_none_match:
        return False
    wanted = etag.removeprefix("W/")
    for part in if_none_match.split(","):
        tag = part.strip()
        if tag == "*" or tag.removeprefix("W/") == wanted:
            return True
    return False


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("transfer-encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size = int(handler.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("content-length") or 0)
    return handler.rfile.read(length) if length > 0 else b""


class FakeGitHub:
    """GitHub's REST API for one GitHub App, on http://127.0.0.1:<port>."""

    def __init__(
        self,
        *,
        app_id: str,
        public_key_pem: str,
        contract: OpenApiContract | None = None,
        app_slug: str = "release-governor",
        latency_s: float = 0.0,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        delivery_timeout_s: float = WEBHOOK_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_id = app_id
        self.webhook_url = webhook_url
        """Where `deliver` and redeliveries POST (the App's webhook URL; settable)."""
        self.webhook_secret = webhook_secret
        """The App's webhook secret; None: deliveries are not signed, as on GitHub."""
        self.delivery_timeout_s = delivery_timeout_s
        """A webhook answering later than this is recorded as `timed out` (GitHub: 10 s)."""
        self.clock = clock
        """The time of deliveries (`delivered_at`) and of the 3-day redelivery window."""
        self.hook_id = 420000000 + int(_hex("hook", app_id)[:6], 16)
        self.latency_s = latency_s
        """Added to every answer, after its side effect (settable at any time): the round
        trip of a far-away GitHub. Each request waits on its own server thread, so
        concurrent requests wait concurrently."""
        self.public_key_pem = public_key_pem
        self.contract = contract if contract is not None else default_contract()
        self.app_slug = app_slug
        self.lock = threading.RLock()
        self.calls: list[Call] = []
        self.violations: list[str] = []
        self.redeliveries: list[int] = []
        self._repos: dict[str, FakeRepo] = {}
        self._by_installation: dict[int, list[FakeRepo]] = {}
        self._sorted_installations: set[int] = set()  # whose list is sorted by full name
        self._installations: dict[int, tuple[str, float]] = {}  # id -> (account, created)
        self._tokens: dict[str, _Token] = {}
        self._tokens_issued = 0
        self._faults: dict[str, deque[_Fault]] = {}
        self._hooks: dict[str, deque[Callable[[Call], None]]] = {}
        self._deliveries: dict[int, _Delivery] = {}
        self._next_delivery = 30_000_000_001
        self._redelivery_threads: list[threading.Thread] = []
        self._user_ids: dict[str, int] = {}
        self._ids: dict[str, int] = {}
        self._next_run = 1000
        # primary rate limits: bucket -> requests counted in the current window
        self._used: dict[str, int] = {}
        self._counted: dict[str, int] = {}  # since reset_request_counts, per bucket
        self._uncounted: dict[str, int] = {}
        self._limits: dict[str, int] = {}  # set_rate_limit overrides
        self._reset_at = int(time.time()) + RATE_LIMIT_WINDOW_S
        self._in_flight = 0
        self.peak_concurrency = 0
        """The most requests the fake was answering at once (GitHub allows 100)."""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._server is not None:
            return
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-github",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes slow answers
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeGitHub:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeGitHub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # ----------------------------------------------------------------- test set-up

    def add_repo(
        self,
        owner: str,
        name: str,
        *,
        repo_id: int,
        installation_id: int = 1,
        default_branch: str = "main",
    ) -> FakeRepo:
        with self.lock:
            key = f"{owner}/{name}".lower()
            if key in self._repos:
                raise ValueError(f"{owner}/{name} already exists")
            repo = FakeRepo(
                self,
                owner,
                name,
                repo_id=repo_id,
                installation_id=installation_id,
                default_branch=default_branch,
            )
            self._repos[key] = repo
            self._by_installation.setdefault(installation_id, []).append(repo)
            self._sorted_installations.discard(installation_id)
            self._installations.setdefault(installation_id, (owner, time.time()))
            return repo

    def add_repos(
        self,
        count: int,
        *,
        installation_id: int = 1,
        owner: str = "octo",
        name_prefix: str = "app",
        first_repo_id: int = 100_000,
        default_branch: str = "main",
        workflows: Sequence[tuple[str, str]] = (),
    ) -> list[FakeRepo]:
        """`count` repositories `<owner>/<name_prefix>-<repo id>` of one installation, cheaply.

        Repository ids run from `first_repo_id`. `workflows` are (file name, name) pairs each
        repository gets, with workflow ids `repo_id * 10 + 1`, `+ 2`, ... in that order.
        """
        repos: list[FakeRepo] = []
        with self.lock:
            for repo_id in range(first_repo_id, first_repo_id + count):
                repo = self.add_repo(
                    owner,
                    f"{name_prefix}-{repo_id}",
                    repo_id=repo_id,
                    installation_id=installation_id,
                    default_branch=default_branch,
                )
                for n, (file_name, name) in enumerate(workflows, start=1):
                    repo.add_workflow(file_name, name=name, workflow_id=repo_id * 10 + n)
                repos.append(repo)
        return repos

    def repos(self, installation_id: int | None = None) -> list[FakeRepo]:
        """The repositories (of one installation), sorted by full name."""
        with self.lock:
            if installation_id is not None:
                return list(self._installation_repos(installation_id))
            return sorted(self._repos.values(), key=lambda r: r.full_name.lower())

    def repo(self, owner: str, name: str) -> FakeRepo:
        with self.lock:
            return self._repos[f"{owner}/{name}".lower()]

    def fail_next(
        self,
        operation_id: str,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: JSON | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Answer the next `times` requests to that operation with `status`, no side effect.

        With `delay_s` the answer also comes late: a client that gives up (or dies) first
        never learns that nothing happened.
        """
        self._queue(
            operation_id,
            times,
            _Fault("fail", status=status, headers=dict(headers or {}), body=body, delay_s=delay_s),
        )

    def slow_next(self, operation_id: str, delay_s: float, *, times: int = 1) -> None:
        """The next `times` requests do their side effect, then answer after `delay_s`."""
        self._queue(operation_id, times, _Fault("slow", delay_s=delay_s))

    def rate_limit_next(self, operation_id: str, *, retry_after_s: int = 1, times: int = 1) -> None:
        """Answer the next `times` requests with GitHub's secondary rate limit (429)."""
        self._queue(operation_id, times, _Fault("rate_limit", retry_after_s=retry_after_s))

    def on_request(
        self, operation_id: str, callback: Callable[[Call], None], *, times: int = 1
    ) -> None:
        """Call `callback` with the next `times` requests to that operation, once the fake
        has handled each (its side effect done, the call recorded) and before it answers.

        The request waits for the callback, on its server thread: a test can kill the
        client there, so GitHub did the work and the answer never arrives.
        """
        if operation_id not in self.contract.operation_ids:
            raise ValueError(f"no operation {operation_id!r} in the contract")
        with self.lock:
            self._hooks.setdefault(operation_id, deque()).extend([callback] * times)

    def _call_hook(self, call: Call) -> None:
        with self.lock:
            hooks = self._hooks.get(call.operation_id or "")
            hook = hooks.popleft() if hooks else None
        if hook is not None:
            hook(call)  # outside the lock: the callback may ask the fake for anything

    def _queue(self, operation_id: str, times: int, fault: _Fault) -> None:
        if operation_id not in self.contract.operation_ids:
            raise ValueError(f"no operation {operation_id!r} in the contract")
        with self.lock:
            self._faults.setdefault(operation_id, deque()).extend([fault] * times)

    def add_delivery(
        self,
        delivery_id: int,
        guid: str,
        event: str,
        status_code: int,
        *,
        action: str | None = None,
        installation_id: int | None = None,
        repository_id: int | None = None,
        payload: JSON | None = None,
        delivered_at: float | None = None,
        redelivery: bool = False,
        status: str | None = None,
    ) -> None:
        """Record a delivery GitHub made (listed newest first by /app/hook/deliveries).

        Nothing is sent. `status` defaults to GitHub's wording for `status_code` (`OK`,
        `Invalid HTTP Response: 500`, `timed out` for 0). A redelivery of it re-sends
        `payload` to `webhook_url`, if both are set.
        """
        with self.lock:
            self._deliveries[delivery_id] = _Delivery(
                delivery_id=delivery_id,
                guid=guid,
                event=event,
                action=action,
                installation_id=installation_id,
                repository_id=repository_id,
                delivered_at=delivered_at if delivered_at is not None else self.clock(),
                redelivery=redelivery,
                status_code=status_code,
                status=status or _delivery_status(status_code),
                duration=0.12,
                payload=payload,
            )

    # ----------------------------------------------------------------- webhooks sent

    def deliver(
        self,
        event: str,
        payload: JSON,
        *,
        guid: str | None = None,
        drop: bool = False,
        url: str | None = None,
    ) -> Delivered:
        """Deliver a webhook as GitHub's Hookshot does, record it, and say what happened.

        POSTs the JSON payload to `url` (default `webhook_url`) with GitHub's headers,
        signed with `webhook_secret` (X-Hub-Signature-256, and the legacy X-Hub-Signature),
        and records the delivery for the deliveries API. A webhook that does not answer
        within `delivery_timeout_s` is recorded as `timed out` (status_code 0) and left
        behind, as GitHub cuts it off; a refused connection as `failed to connect to
        network`. `drop=True` records a delivery that never reached the URL (`failed to
        connect to host`, status_code 0) without sending anything. Blocks until done.
        """
        target = url or self.webhook_url
        if target is None and not drop:
            raise RuntimeError("set FakeGitHub.webhook_url (or pass url=) before deliver()")
        body = json.dumps(payload).encode()
        headers = self._hook_headers(event, guid or str(uuid.uuid1()), body)
        return self._send_delivery(target, headers, body, payload, redelivery=False, drop=drop)

    def _hook_headers(self, event: str, guid: str, body: bytes) -> dict[str, str]:
        headers = {
            "Accept": "*/*",
            "Content-Type": "application/json",
            "User-Agent": f"GitHub-Hookshot/{HOOKSHOT_VERSION}",
            "X-GitHub-Delivery": guid,
            "X-GitHub-Event": event,
            "X-GitHub-Hook-ID": str(self.hook_id),
            "X-GitHub-Hook-Installation-Target-ID": self.app_id,
            "X-GitHub-Hook-Installation-Target-Type": "integration",
        }
        return self._signed(headers, body)

    def _signed(self, headers: dict[str, str], body: bytes) -> dict[str, str]:
        """The headers with the signatures of `body` under the current webhook secret."""
        signed = {k: v for k, v in headers.items() if not k.startswith("X-Hub-Signature")}
        if self.webhook_secret is not None:
            key = self.webhook_secret.encode()
            sha1 = hmac.new(key, body, hashlib.sha1).hexdigest()
            sha256 = hmac.new(key, body, hashlib.sha256).hexdigest()
            signed["X-Hub-Signature"] = f"sha1={sha1}"
            signed["X-Hub-Signature-256"] = f"sha256={sha256}"
        return signed

    def _send_delivery(
        self,
        target: str | None,
        headers: dict[str, str],
        body: bytes,
        payload: JSON | None,
        *,
        redelivery: bool,
        drop: bool = False,
    ) -> Delivered:
        """POST one delivery (outside the lock: the webhook calls this fake back) and record it."""
        delivered_at = self.clock()
        began = time.perf_counter()
        status_code, response_headers, response_text = 0, {}, None
        if drop or target is None:
            status = "failed to connect to host"
        else:
            try:
                response = httpx.post(
                    target, content=body, headers=headers, timeout=self.delivery_timeout_s
                )
            except httpx.TimeoutException:
                status = "timed out"
            except httpx.TransportError:
                status = "failed to connect to network"
            else:
                if time.perf_counter() - began > self.delivery_timeout_s:
                    status = "timed out"  # answered, but after GitHub had given up
                else:
                    status_code = response.status_code
                    status = _delivery_status(status_code)
                    response_headers = dict(response.headers)
                    response_text = response.text
        duration = round(time.perf_counter() - began, 3)
        parsed: Any = None
        if response_text is not None:
            try:
                parsed = json.loads(response_text)
            except json.JSONDecodeError:
                parsed = response_text
        payload_doc = payload if isinstance(payload, dict) else {}
        installation = payload_doc.get("installation")
        repository = payload_doc.get("repository")
        with self.lock:
            delivery_id = self._new_delivery_id()
            self._deliveries[delivery_id] = _Delivery(
                delivery_id=delivery_id,
                guid=headers["X-GitHub-Delivery"],
                event=headers["X-GitHub-Event"],
                action=payload_doc.get("action"),
                installation_id=installation.get("id") if isinstance(installation, dict) else None,
                repository_id=repository.get("id") if isinstance(repository, dict) else None,
                delivered_at=delivered_at,
                redelivery=redelivery,
                status_code=status_code,
                status=status,
                duration=duration,
                url=target,
                request_headers=dict(headers),
                payload=payload,
                body=body,
                response_headers=response_headers,
                response_body=response_text,
            )
        return Delivered(
            delivery_id=delivery_id,
            guid=headers["X-GitHub-Delivery"],
            status_code=status_code,
            status=status,
            body=parsed,
            duration_s=duration,
            redelivery=redelivery,
        )

    def _new_delivery_id(self) -> int:
        while self._next_delivery in self._deliveries:
            self._next_delivery += 1
        delivery_id = self._next_delivery
        self._next_delivery += 1
        return delivery_id

    def _start_redelivery(self, delivery: _Delivery) -> None:
        """Re-send a delivery in the background: same GUID, headers and payload, new id.

        It goes to the App's webhook URL as it is now (`webhook_url`), like GitHub, or back
        to where the delivery went if none is set; signatures are those of the current
        secret (the same ones unless it was rotated). A delivery recorded by
        `add_delivery` without a payload, or with nowhere to go, is not re-sent.
        """
        target = self.webhook_url or delivery.url
        body = delivery.body
        if body is None and delivery.payload is not None:
            body = json.dumps(delivery.payload).encode()
        if body is None or target is None:
            return
        headers = delivery.request_headers or self._hook_headers(
            delivery.event, delivery.guid, body
        )
        headers = self._signed(headers, body)
        thread = threading.Thread(
            target=self._send_delivery,
            args=(target, headers, body, delivery.payload),
            kwargs={"redelivery": True},
            name=f"redeliver-{delivery.delivery_id}",
            daemon=True,
        )
        self._redelivery_threads.append(thread)
        thread.start()

    def wait_for_redeliveries(self, timeout_s: float = 30.0) -> None:
        """Wait until every redelivery requested so far has been sent and recorded.

        Raises TimeoutError if some are still under way after `timeout_s`.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            with self.lock:
                pending = [t for t in self._redelivery_threads if t.is_alive()]
                self._redelivery_threads = pending
            if not pending:
                return
            for thread in pending:
                thread.join(max(deadline - time.monotonic(), 0))
            if time.monotonic() >= deadline and any(t.is_alive() for t in pending):
                raise TimeoutError(f"{len(pending)} redeliveries still under way")

    def deliveries(self, guid: str | None = None) -> list[JSON]:
        """Recorded deliveries (of one GUID), newest first, as get-webhook-delivery shows them."""
        with self.lock:
            found = [d for d in self._deliveries.values() if guid is None or d.guid == guid]
            found.sort(key=lambda d: (d.delivered_at, d.delivery_id), reverse=True)
            return [self._delivery_json(d) for d in found]

    # ------------------------------------------------------------------ rate limits

    def rate_limit_for(self, installation_id: int | None = None, *, app: bool = False) -> int:
        """The primary rate limit per hour of an installation (or of the App itself).

        An installation has 5,000, plus 50 per repository beyond 20, up to 12,500 (GitHub's
        documented scaling for installations outside GitHub Enterprise Cloud), unless
        `set_rate_limit` says otherwise.
        """
        with self.lock:
            return self._limit(_bucket_key(installation_id, app=app))

    def set_rate_limit(
        self, limit: int | None, *, installation_id: int | None = None, app: bool = False
    ) -> None:
        """Make an installation's (or the App's) limit `limit` (None: GitHub's again)."""
        key = _bucket_key(installation_id, app=app)
        with self.lock:
            if limit is None:
                self._limits.pop(key, None)
            else:
                self._limits[key] = limit

    def _limit(self, bucket: str) -> int:
        if bucket in self._limits:
            return self._limits[bucket]
        if bucket.startswith("installation:"):
            repos = len(self._by_installation.get(int(bucket.split(":", 1)[1]), []))
            return min(RATE_LIMIT + 50 * max(repos - 20, 0), RATE_LIMIT_MAX)
        if bucket == "anonymous":
            return RATE_LIMIT_UNAUTHENTICATED
        return RATE_LIMIT

    def counted_requests(self, installation_id: int | None = None, *, app: bool = False) -> int:
        """Requests that counted against a primary rate limit since the last reset.

        Of one installation (all its tokens share its limit), of the App's JWT (`app=True`),
        or of every bucket (neither). 304 Not Modified answers do not count.
        """
        with self.lock:
            return self._tally(self._counted, installation_id, app=app)

    def uncounted_requests(self, installation_id: int | None = None, *, app: bool = False) -> int:
        """Conditional requests answered 304 Not Modified (they do not count), same buckets."""
        with self.lock:
            return self._tally(self._uncounted, installation_id, app=app)

    @staticmethod
    def _tally(counts: dict[str, int], installation_id: int | None, *, app: bool) -> int:
        if installation_id is None and not app:
            return sum(counts.values())
        return counts.get(_bucket_key(installation_id, app=app), 0)

    def reset_request_counts(self) -> None:
        """Start afresh: counts at zero and a new rate-limit hour (x-ratelimit-used: 0)."""
        with self.lock:
            self._used.clear()
            self._counted.clear()
            self._uncounted.clear()
            self._reset_at = int(time.time()) + RATE_LIMIT_WINDOW_S
            self.peak_concurrency = self._in_flight

    def secondary_points_peak(
        self, *, installation_id: int | None = None, app: bool = False, window_s: float = 60.0
    ) -> int:
        """The most secondary-rate-limit points spent in any `window_s` (GitHub: 900/min).

        GET is 1 point, POST/PATCH/PUT/DELETE 5, as GitHub documents for most endpoints;
        over the calls recorded (of one bucket, or all).
        """
        with self.lock:
            key = (
                None
                if installation_id is None and not app
                else _bucket_key(installation_id, app=app)
            )
            events = [
                (c.at, 1 if c.method == "GET" else 5)
                for c in self.calls
                if key is None or c.bucket == key
            ]
        events.sort()
        peak = total = 0
        low = 0
        for at, points in events:
            total += points
            while events[low][0] <= at - window_s:
                total -= events[low][1]
                low += 1
            peak = max(peak, total)
        return peak

    def expire_installation_tokens(self) -> None:
        """Make every installation token issued so far expired (GitHub: after one hour)."""
        with self.lock:
            for token in self._tokens.values():
                token.expires_at = time.time() - 1

    def installation_tokens_issued(self) -> int:
        with self.lock:
            return self._tokens_issued

    def calls_to(self, operation_id: str) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if call.operation_id == operation_id]

    # -------------------------------------------------------------- shared helpers

    @property
    def bot_login(self) -> str:
        return f"{self.app_slug}[bot]"

    def next_id(self, kind: str) -> int:
        with self.lock:
            self._ids[kind] = self._ids.get(kind, 0) + 1
            return self._ids[kind]

    def next_run_id(self) -> int:
        with self.lock:
            run_id = self._next_run
            self._next_run += 1
            return run_id

    def user_json(self, login: str, *, kind: str = "User") -> JSON:
        """A 'simple user' object; logins ending in [bot] are Bots."""
        with self.lock:
            user_id = self._user_ids.setdefault(login.lower(), 583231 + len(self._user_ids))
        api = f"{self._api_root()}/users/{quote(login)}"
        return {
            "login": login,
            "id": user_id,
            "node_id": _node_id(kind, user_id),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
            "gravatar_id": "",
            "url": api,
            "html_url": f"{WEB_URL}/{login}",
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": "Bot" if login.endswith("[bot]") else kind,
            "user_view_type": "public",
            "site_admin": False,
        }

    def _api_root(self) -> str:
        return self.url if self._server is not None else "http://127.0.0.1"

    def paginate(
        self,
        req: _Request,
        items: Sequence[Any],
        *,
        default_per_page: int = 30,
        max_per_page: int = 100,
    ) -> tuple[list[Any], dict[str, str], int]:
        """One page of `items`, the Link header for it, and the page number."""
        per_page_raw = req.q("per_page")
        per_page = int(per_page_raw) if per_page_raw else default_per_page
        per_page = min(max(per_page, 1), max_per_page)
        page = max(int(req.q("page") or 1), 1)
        last = max(math.ceil(len(items) / per_page), 1)
        chunk = list(items[(page - 1) * per_page : page * per_page])
        kept = [(k, v) for k, values in req.query.items() if k not in ("page",) for v in values]

        def link(number: int, rel: str) -> str:
            return f'<{self.url}{req.path}?{urlencode([*kept, ("page", number)])}>; rel="{rel}"'

        links: list[str] = []
        if page > 1:
            links.append(link(min(page - 1, last), "prev"))
        if page < last:
            links.append(link(page + 1, "next"))
            links.append(link(last, "last"))
        if page > 1:
            links.append(link(1, "first"))
        return chunk, ({"link": ", ".join(links)} if links else {}), page

    # --------------------------------------------------------------------- serving

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        method = handler.command
        raw_path, _, raw_query = handler.path.partition("?")
        query = parse_qs(raw_query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        raw_body = _read_body(handler)
        arrived = time.time()
        with self.lock:
            self._in_flight += 1
            self.peak_concurrency = max(self.peak_concurrency, self._in_flight)
        try:
            self._serve_one(handler, method, raw_path, query, headers, raw_body, arrived)
        finally:
            with self.lock:
                self._in_flight -= 1

    def _serve_one(
        self,
        handler: BaseHTTPRequestHandler,
        method: str,
        raw_path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        raw_body: bytes,
        arrived: float,
    ) -> None:
        try:
            parsed: Any = json.loads(raw_body) if raw_body.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            parsed = None
        where = f"{method} {raw_path}"
        problems: list[str] = []
        if headers.get("x-github-api-version") is None:
            problems.append(f"missing X-GitHub-Api-Version on {where}")
        elif headers["x-github-api-version"] != API_VERSION:
            problems.append(f"X-GitHub-Api-Version {headers['x-github-api-version']!r} on {where}")
        accepted = [part.split(";")[0].strip() for part in headers.get("accept", "").split(",")]
        if MEDIA_TYPE not in accepted:
            problems.append(f"missing Accept: {MEDIA_TYPE} on {where}")

        op: Operation | None = None
        bucket = "anonymous"
        try:
            op = self.contract.match(method, raw_path)
        except ContractViolation as exc:
            problems.append(str(exc))
            answer = self._error(404, "Not Found")
        else:
            try:
                self.contract.validate(
                    method, raw_path, query, raw_body, headers.get("content-type")
                )
            except ContractViolation as exc:
                problems.append(f"{where}: {exc}")
                answer = self._error(400, f"contract violation: {exc}", op)
            else:
                req = _Request(op, raw_path, query, parsed, None)
                answer = self._answer(req, headers)
                bucket = req.bucket
        answer, data = self._conditional(method, answer, headers.get("if-none-match"))
        with self.lock:
            self.violations.extend(problems)
            if time.time() >= self._reset_at:  # a new rate-limit hour
                self._used.clear()
                self._reset_at = int(time.time()) + RATE_LIMIT_WINDOW_S
            counted = not answer.uncounted
            if counted:
                self._used[bucket] = self._used.get(bucket, 0) + 1
                self._counted[bucket] = self._counted.get(bucket, 0) + 1
            elif answer.status == 304:
                self._uncounted[bucket] = self._uncounted.get(bucket, 0) + 1
            used = self._used.get(bucket, 0)
            limit = self._limit(bucket)
            call = Call(
                method=method,
                path=raw_path,
                query=query,
                json=parsed,
                operation_id=op.operation_id if op else None,
                status=answer.status,
                headers=headers,
                bucket=bucket,
                counted=counted,
                at=arrived,
            )
            self.calls.append(call)
        self._call_hook(call)
        delay_s = answer.delay_s + self.latency_s
        if delay_s > 0:
            self._stopping.wait(delay_s)
        self._write(handler, answer, data, used, limit)

    @staticmethod
    def _conditional(
        method: str, answer: _Answer, if_none_match: str | None
    ) -> tuple[_Answer, bytes]:
        """The answer and its body's bytes, turned into 304 Not Modified if it still matches.

        Every successful GET carries a strong ETag of its exact body (for a list, of that
        page); a conditional GET whose If-None-Match names it answers 304 without a body,
        which does not count against the primary rate limit. GitHub sends 304 for any
        conditional GET, whether or not the description of the operation lists it (most do
        not), so the contract does not restrict it.
        """
        data = b"" if answer.body is None else json.dumps(answer.body).encode()
        if method != "GET" or answer.status != 200:
            return answer, data
        etag = f'"{hashlib.sha256(data).hexdigest()}"'
        answer.headers["etag"] = etag
        if not _etag_matches(if_none_match, etag):
            return answer, data
        return _Answer(304, None, dict(answer.headers), answer.delay_s, uncounted=True), b""

    def _error(
        self,
        status: int,
        message: str,
        op: Operation | None = None,
        *,
        errors: list[JSON] | None = None,
        headers: dict[str, str] | None = None,
    ) -> _Answer:
        body: JSON = {"message": message}
        if errors:
            body["errors"] = errors
        body["documentation_url"] = op.docs_url if op is not None else DOCS_URL
        body["status"] = str(status)
        return _Answer(status, body, dict(headers or {}))

    def _answer(self, req: _Request, headers: dict[str, str]) -> _Answer:  # noqa: PLR0912
        op = req.op
        try:
            with self.lock:
                repo: FakeRepo | None = None
                if req.path == "/app" or req.path.startswith("/app/"):
                    self._check_jwt(headers.get("authorization"))
                    req.bucket = "app"
                else:
                    req.token = self._check_token(headers.get("authorization"))
                    req.bucket = f"installation:{req.token.installation_id}"
                if self._used.get(req.bucket, 0) >= self._limit(req.bucket):
                    return self._primary_limit_exceeded(req, op)
                if req.token is not None and {"owner", "repo"} <= op.path_params.keys():
                    repo = self._repo_for(req.token, op)
                faults = self._faults.get(op.operation_id)
                fault = faults.popleft() if faults else None
                if fault is not None and fault.kind == "fail":
                    if fault.body is not None:
                        failed = _Answer(fault.status, fault.body, dict(fault.headers))
                    else:
                        try:
                            phrase = HTTPStatus(fault.status).phrase
                        except ValueError:
                            phrase = "Error"
                        failed = self._error(fault.status, phrase, op, headers=fault.headers)
                    failed.delay_s = fault.delay_s
                    return failed
                if fault is not None and fault.kind == "rate_limit":
                    answer = self._error(
                        429,
                        "You have exceeded a secondary rate limit. Please wait a few minutes "
                        "before you try again. If you reach out to GitHub Support for help, "
                        "please include the request ID.",
                        headers={"retry-after": str(fault.retry_after_s)},
                    )
                    answer.body["documentation_url"] = (
                        "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
                        "#about-secondary-rate-limits"
                    )
                    answer.rate_limited = True
                    return answer
                if repo is not None:
                    handler = _REPO_HANDLERS.get(op.operation_id)
                    answer = handler(repo, req) if handler else self._error(404, "Not Found", op)
                else:
                    answer = self._app_operation(req)
                if fault is not None and fault.kind == "slow":
                    answer.delay_s = fault.delay_s
                return answer
        except GitHubError as exc:
            return self._error(exc.status, exc.message, op, errors=exc.errors, headers=exc.headers)
        except Exception as exc:  # a bug in the fake: answer 500 and make the test see it
            with self.lock:
                self.violations.append(f"fake GitHub failed on {op.operation_id}: {exc!r}")
            return self._error(500, f"fake GitHub failed: {exc!r}", op)

    def _primary_limit_exceeded(self, req: _Request, op: Operation) -> _Answer:
        """403 with x-ratelimit-remaining 0, as GitHub answers past the primary limit."""
        if req.token is not None:
            message = f"API rate limit exceeded for installation ID {req.token.installation_id}."
        else:
            message = f"API rate limit exceeded for app ID {self.app_id}."
        answer = self._error(403, message, op)
        answer.body["documentation_url"] = RATE_LIMIT_DOCS
        answer.rate_limited = answer.uncounted = True
        return answer

    def _check_jwt(self, authorization: str | None) -> None:
        undecodable = GitHubError(401, "A JSON web token could not be decoded")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise undecodable
        try:
            claims = jwt.decode(
                token.strip(),
                self.public_key_pem,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_iss": False,
                    "verify_aud": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise undecodable from exc
        iss, iat, exp = claims.get("iss"), claims.get("iat"), claims.get("exp")
        if not isinstance(iss, str) or iss != self.app_id:
            raise undecodable
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (iat, exp)):
            raise undecodable
        now = time.time()
        iat_s, exp_s = float(cast(float, iat)), float(cast(float, exp))
        if iat_s > now + CLOCK_SLACK_S:
            raise GitHubError(
                401, "'Issued at' claim ('iat') must be an Integer representing a time in the past"
            )
        if exp_s <= now:
            raise GitHubError(
                401,
                "'Expiration time' claim ('exp') must be a numeric value representing the "
                "future time at which the assertion expires",
            )
        if exp_s - iat_s > JWT_MAX_LIFETIME_S + CLOCK_SLACK_S:
            raise GitHubError(401, "'Expiration time' claim ('exp') is too far in the future")

    def _check_token(self, authorization: str | None) -> _Token:
        if not authorization:
            raise GitHubError(401, "Requires authentication")
        scheme, _, value = authorization.partition(" ")
        token = self._tokens.get(value.strip()) if scheme.lower() in ("token", "bearer") else None
        if token is None or token.expires_at <= time.time():
            raise GitHubError(401, "Bad credentials")
        return token

    def _repo_for(self, token: _Token, op: Operation) -> FakeRepo:
        key = f"{op.path_params['owner']}/{op.path_params['repo']}".lower()
        repo = self._repos.get(key)
        if repo is None or repo.installation_id != token.installation_id:
            raise _not_found()
        if token.repositories is not None and key not in token.repositories:
            raise _not_found()
        return repo

    # ------------------------------------------------------------- app endpoints

    def _app_operation(self, req: _Request) -> _Answer:
        handlers: dict[str, Callable[[_Request], _Answer]] = {
            "apps/create-installation-access-token": self._h_access_token,
            "apps/list-installations": self._h_list_installations,
            "apps/list-webhook-deliveries": self._h_list_deliveries,
            "apps/get-webhook-delivery": self._h_get_delivery,
            "apps/redeliver-webhook-delivery": self._h_redeliver,
            "apps/list-repos-accessible-to-installation": self._h_installation_repos,
        }
        handler = handlers.get(req.op.operation_id)
        if handler is None:
            raise _not_found()
        return handler(req)

    def _installation_repos(self, installation_id: int) -> list[FakeRepo]:
        """The installation's repositories by full name (kept sorted, not re-sorted each time)."""
        repos = self._by_installation.get(installation_id, [])
        if installation_id not in self._sorted_installations:
            repos.sort(key=lambda r: r.full_name.lower())
            self._sorted_installations.add(installation_id)
        return repos

    def _h_access_token(self, req: _Request) -> _Answer:
        installation_id = int(req.op.path_params["installation_id"])
        if installation_id not in self._installations:
            raise _not_found()
        body = cast(JSON, req.body or {})
        repos = self._installation_repos(installation_id)
        selected: list[FakeRepo] | None = None
        if body.get("repositories") or body.get("repository_ids"):
            names = {str(n).lower() for n in body.get("repositories") or []}
            ids = set(body.get("repository_ids") or [])
            selected = [r for r in repos if r.name.lower() in names or r.repo_id in ids]
            missing_names = names - {r.name.lower() for r in selected}
            missing_ids = ids - {r.repo_id for r in selected}
            if missing_names or missing_ids:
                raise GitHubError(
                    422,
                    "There is at least one repository that does not exist or is not "
                    "accessible to the parent installation.",
                )
        permissions = dict(DEFAULT_PERMISSIONS)
        if body.get("permissions"):
            requested = cast(dict[str, str], body["permissions"])
            for name, level in requested.items():
                granted = DEFAULT_PERMISSIONS.get(name)
                if granted is None or (level == "write" and granted != "write"):
                    raise GitHubError(
                        422, "The permissions requested are not granted to this installation."
                    )
            permissions = dict(requested)
        value = "ghs_" + "".join(
            secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
            for _ in range(36)
        )
        expires = time.time() + TOKEN_LIFETIME_S
        self._tokens[value] = _Token(
            token=value,
            installation_id=installation_id,
            expires_at=expires,
            repositories=(
                frozenset(r.full_name.lower() for r in selected) if selected is not None else None
            ),
            permissions=permissions,
        )
        self._tokens_issued += 1
        answer: JSON = {
            "token": value,
            "expires_at": iso(expires),
            "permissions": permissions,
            "repository_selection": "selected" if selected is not None else "all",
        }
        if selected is not None:
            answer["repositories"] = [r.repo_json() for r in selected]
        return _Answer(201, answer)

    def _installation_json(self, installation_id: int) -> JSON:
        account, created = self._installations[installation_id]
        account_json = self.user_json(account, kind="Organization")
        # The description's `account` is allOf(simple user, enterprise): give both shapes.
        account_json.update(
            {
                "name": account,
                "slug": account.lower(),
                "created_at": iso(created),
                "updated_at": iso(created),
            }
        )
        return {
            "id": installation_id,
            "client_id": f"Iv1.{_hex('client', self.app_id)[:16]}",
            "account": account_json,
            "repository_selection": "all",
            "access_tokens_url": f"{self.url}/app/installations/{installation_id}/access_tokens",
            "repositories_url": f"{self.url}/installation/repositories",
            "html_url": (
                f"{WEB_URL}/organizations/{account}/settings/installations/{installation_id}"
            ),
            "app_id": int(self.app_id) if self.app_id.isdigit() else 0,
            "app_slug": self.app_slug,
            "target_id": account_json["id"],
            "target_type": "Organization",
            "permissions": dict(DEFAULT_PERMISSIONS),
            "events": list(DEFAULT_EVENTS),
            "created_at": iso(created),
            "updated_at": iso(created),
            "single_file_name": None,
            "has_multiple_single_files": False,
            "single_file_paths": [],
            "suspended_by": None,
            "suspended_at": None,
        }

    def _h_list_installations(self, req: _Request) -> _Answer:
        ids = sorted(self._installations)
        page_items, links, _ = self.paginate(req, ids)
        return _Answer(200, [self._installation_json(i) for i in page_items], links)

    def _h_installation_repos(self, req: _Request) -> _Answer:
        token = req.token
        assert token is not None
        repos = [
            r
            for r in self._installation_repos(token.installation_id)
            if token.repositories is None or r.full_name.lower() in token.repositories
        ]
        page_items, links, _ = self.paginate(req, repos)
        return _Answer(
            200,
            {
                "total_count": len(repos),
                "repository_selection": "all" if token.repositories is None else "selected",
                "repositories": [r.repo_json() for r in page_items],
            },
            links,
        )

    @staticmethod
    def _delivery_summary(delivery: _Delivery) -> JSON:
        """The 'simple webhook delivery' of the list."""
        return {
            "id": delivery.delivery_id,
            "guid": delivery.guid,
            "delivered_at": iso(delivery.delivered_at),
            "redelivery": delivery.redelivery,
            "duration": delivery.duration,
            "status": delivery.status,
            "status_code": delivery.status_code,
            "event": delivery.event,
            "action": delivery.action,
            "installation_id": delivery.installation_id,
            "repository_id": delivery.repository_id,
            "throttled_at": None,
        }

    def _delivery_json(self, delivery: _Delivery) -> JSON:
        """The 'webhook delivery' of get-webhook-delivery: the summary, request and response."""
        doc = self._delivery_summary(delivery)
        doc["url"] = delivery.url or ""  # the URL the delivery was sent to
        headers = delivery.request_headers or {
            "Accept": "*/*",
            "Content-Type": "application/json",
            "User-Agent": f"GitHub-Hookshot/{HOOKSHOT_VERSION}",
            "X-GitHub-Delivery": delivery.guid,
            "X-GitHub-Event": delivery.event,
        }
        doc["request"] = {"headers": dict(headers), "payload": delivery.payload}
        doc["response"] = {
            "headers": dict(delivery.response_headers) if delivery.response_headers else None,
            "payload": delivery.response_body,
        }
        return doc

    def _h_list_deliveries(self, req: _Request) -> _Answer:
        """Deliveries newest first, a page at a time; the Link header carries the cursors.

        `status=success` keeps status codes 200-399 and `status=failure` 400-599, as the
        description says: a delivery that got no answer (status_code 0: timed out, no
        connection) is in neither, so a client looking for failures reads `status`, not
        the filter (GitHub's own redelivery script looks for `status != "OK"`). A cursor
        names the first delivery of its page, so new deliveries do not shift the pages.
        """
        deliveries = sorted(
            self._deliveries.values(),
            key=lambda d: (d.delivered_at, d.delivery_id),
            reverse=True,
        )
        if (status := req.q("status")) is not None:
            low, high = (200, 399) if status == "success" else (400, 599)
            deliveries = [d for d in deliveries if low <= d.status_code <= high]
        per_page = min(max(int(req.q("per_page") or 30), 1), 100)
        start = 0
        if (cursor := req.q("cursor")) is not None:
            ids = [f"v1_{d.delivery_id}" for d in deliveries]
            if cursor not in ids:
                raise GitHubError(422, "Invalid cursor")
            start = ids.index(cursor)
        chunk = deliveries[start : start + per_page]
        kept = [(k, v) for k, vs in req.query.items() if k != "cursor" for v in vs]

        def link(delivery: _Delivery, rel: str) -> str:
            params = urlencode([*kept, ("cursor", f"v1_{delivery.delivery_id}")])
            return f'<{self.url}{req.path}?{params}>; rel="{rel}"'

        links: list[str] = []
        if start + per_page < len(deliveries):
            links.append(link(deliveries[start + per_page], "next"))
        if start > 0:
            links.append(link(deliveries[max(start - per_page, 0)], "prev"))
        headers = {"link": ", ".join(links)} if links else {}
        return _Answer(200, [self._delivery_summary(d) for d in chunk], headers)

    def _h_get_delivery(self, req: _Request) -> _Answer:
        delivery = self._deliveries.get(int(req.op.path_params["delivery_id"]))
        if delivery is None:
            raise _not_found()
        return _Answer(200, self._delivery_json(delivery))

    def _h_redeliver(self, req: _Request) -> _Answer:
        """Accept a redelivery (202 at once) and send it in the background.

        Only deliveries of the past 3 days are redelivered (github.com's window); an older
        one answers 422, the status the description gives for a refused redelivery.
        """
        delivery_id = int(req.op.path_params["delivery_id"])
        delivery = self._deliveries.get(delivery_id)
        if delivery is None:
            raise _not_found()
        if self.clock() - delivery.delivered_at > REDELIVERY_WINDOW_S:
            raise GitHubError(
                422,
                "Validation Failed",
                errors=[
                    {
                        "resource": "HookDelivery",
                        "code": "custom",
                        "field": "delivered_at",
                        "message": "Deliveries older than 3 days cannot be redelivered",
                    }
                ],
            )
        self.redeliveries.append(delivery_id)
        self._start_redelivery(delivery)
        return _Answer(202, {})

    # --------------------------------------------------------------------- writing

    def _write(
        self, handler: BaseHTTPRequestHandler, answer: _Answer, data: bytes, used: int, limit: int
    ) -> None:
        remaining = 0 if answer.rate_limited else max(limit - used, 0)
        headers = {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": str(self._reset_at),
            "x-ratelimit-used": str(min(used, limit)),
            "x-ratelimit-resource": "core",
            "x-github-request-id": self._request_id(),
            "x-github-api-version-selected": API_VERSION,
            "x-github-media-type": "github.v3; format=json",
            **answer.headers,
        }
        try:
            handler.send_response(answer.status)
            for name, value in headers.items():
                handler.send_header(name, value)
            if answer.status not in (204, 304):
                if answer.body is not None:
                    handler.send_header("content-type", "application/json; charset=utf-8")
                handler.send_header("content-length", str(len(data)))
            handler.end_headers()
            if answer.status not in (204, 304) and data:
                handler.wfile.write(data)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
            handler.close_connection = True

    @staticmethod
    def _request_id() -> str:
        parts = (secrets.token_hex(2), secrets.token_hex(3), secrets.token_hex(4))
        return ":".join(p.upper() for p in parts) + f":{secrets.token_hex(4).upper()}"


_DEFAULT_CONTRACT: OpenApiContract | None = None
_DEFAULT_CONTRACT_LOCK = threading.Lock()


def default_contract() -> OpenApiContract:
    """The OpenAPI subset, loaded once per process (it is read-only)."""
    global _DEFAULT_CONTRACT
    with _DEFAULT_CONTRACT_LOCK:
        if _DEFAULT_CONTRACT is None:
            _DEFAULT_CONTRACT = OpenApiContract()
        return _DEFAULT_CONTRACT


@cache
def _webhook_validators(event: str) -> tuple[Draft202012Validator, ...]:
    validators: list[Draft202012Validator] = []
    for path in sorted(WEBHOOK_SCHEMAS.glob(f"{event}.*.json")):
        schema = json.loads(path.read_text())["schema"]
        Draft202012Validator.check_schema(schema)
        validators.append(Draft202012Validator(schema))
    if not validators:
        raise ValueError(f"no webhook schema for {event!r} in {WEBHOOK_SCHEMAS}")
    return tuple(validators)


def validate_webhook(event: str, payload: JSON) -> list[str]:
    """Why `payload` is not a valid `event` webhook (X-GitHub-Event), or [] if it is.

    Checked against the event's schemas in tests/fixtures/github/webhook-schemas/ (one per
    action, `<event>.<action>.json`): valid if one of them accepts it; otherwise the errors
    of all, as `<json path>: <message>`. Formats are not checked.
    """
    errors: list[str] = []
    for validator in _webhook_validators(event):
        found = sorted(validator.iter_errors(payload), key=lambda e: e.json_path)
        if not found:
            return []
        errors.extend(f"{error.json_path}: {error.message}" for error in found)
    return errors


def iter_link_header(value: str) -> Iterator[tuple[str, str]]:
    """(rel, url) pairs of a Link header, for tests that follow pagination."""
    for part in value.split(","):
        url_part, _, params = part.strip().partition(";")
        rel = re.search(r'rel="([^"]+)"', params)
        if rel:
            yield rel.group(1), url_part.strip().strip("<>")
