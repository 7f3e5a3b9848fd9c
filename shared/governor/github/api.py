"""The GitHub calls the governor makes, as typed methods. Every one is in the contract test."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Generic, TypeVar
from urllib.parse import parse_qs, quote, urlsplit

import msgspec

from governor.github.auth import InstallationToken, TokenCache, app_jwt
from governor.github.client import GitHubClient, GitHubError, NotFound
from governor.policy import Permission
from governor.risk import ChangedFile, Comparison

COMPARE_FILE_LIMIT: Final = 300
"""GitHub lists at most 300 files for a comparison; a list that long may be cut short."""
_LEGACY_PERMISSION: Final = {"admin": "admin", "write": "write", "read": "read"}
T = TypeVar("T")


class Conditional(msgspec.Struct, Generic[T], frozen=True):
    """The answer to a conditional GET: `changed` False (a 304) means `value` is None and
    the caller's copy stands."""

    changed: bool
    value: T | None
    etag: str | None


class InstalledRepo(msgspec.Struct, frozen=True):
    id: int
    full_name: str
    default_branch: str
    installation_id: int
    pushed_at: str | None = None
    """GitHub's `pushed_at`, as GitHub wrote it: changes with every push to any branch."""


class HookDelivery(msgspec.Struct, frozen=True):
    """One attempt at a webhook delivery (GET /app/hook/deliveries)."""

    id: int
    guid: str
    delivered_at: datetime
    redelivery: bool
    status_code: int
    event: str

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300


class DispatchResult(msgspec.Struct, frozen=True):
    run_id: int | None
    run_url: str | None
    html_url: str | None


def _changed_file(entry: dict[str, Any]) -> ChangedFile:
    return ChangedFile(
        filename=entry["filename"],
        status=entry.get("status", "modified"),
        previous_filename=entry.get("previous_filename"),
    )


def _path(*segments: str | int) -> str:
    return "/" + "/".join(quote(str(s), safe="") for s in segments)


class RepoApi:
    """Calls on one repository with an installation token."""

    def __init__(self, client: GitHubClient, owner: str, name: str) -> None:
        self._client = client
        self.owner, self.name = owner, name
        self.full_name = f"{owner}/{name}"

    def _repo(self, *segments: str | int) -> str:
        return _path("repos", self.owner, self.name, *segments)

    def repository(self) -> dict[str, Any]:
        body: dict[str, Any] = self._client.get(self._repo()).json()
        return body

    def file_text(self, path: str, ref: str) -> str | None:
        """A file's text at `ref`, or None if it does not exist there."""
        url = self._repo("contents") + "/" + quote(path, safe="/")
        try:
            body = self._client.get(url, {"ref": ref}).json()
        except NotFound:
            return None
        if not isinstance(body, dict) or body.get("type") != "file":
            return None
        return base64.b64decode(body.get("content", "")).decode("utf-8", errors="replace")

    def compare(self, base: str, head: str) -> Comparison:
        """How `head` differs from `base`, with every changed file GitHub lists."""
        url = self._repo("compare", f"{base}...{head}")
        first: dict[str, Any] | None = None
        files: dict[str, ChangedFile] = {}
        for page in self._client.paginate(url):
            body = page.json()
            first = first or body
            for entry in body.get("files") or []:
                changed = _changed_file(entry)
                files[changed.filename] = changed
        assert first is not None
        return Comparison(
            status=str(first.get("status", "diverged")),
            ahead_by=int(first.get("ahead_by", 0)),
            behind_by=int(first.get("behind_by", 0)),
            files=tuple(files.values()),
            complete=len(files) < COMPARE_FILE_LIMIT,
        )

    def commit_change(self, sha: str) -> Comparison:
        """What commit `sha` changed against its first parent (GitHub lists up to 300 files)."""
        body = self._client.get(self._repo("commits", sha), {"per_page": 100}).json()
        files = tuple(_changed_file(entry) for entry in body.get("files") or [])
        return Comparison(
            status="ahead",
            ahead_by=1,
            behind_by=0,
            files=files,
            complete=len(files) < COMPARE_FILE_LIMIT,
        )

    def dispatch(self, workflow: str, ref: str, inputs: dict[str, str]) -> DispatchResult:
        """Start `workflow` on branch `ref`; the run id comes back where GitHub supports it."""
        response = self._client.post(
            self._repo("actions", "workflows", workflow, "dispatches"),
            {"ref": ref, "inputs": inputs, "return_run_details": True},
        )
        if response.status_code == 204 or not response.content:
            return DispatchResult(None, None, None)
        body = response.json()
        run_id = body.get("workflow_run_id")
        return DispatchResult(
            int(run_id) if run_id is not None else None, body.get("run_url"), body.get("html_url")
        )

    def workflow_runs(
        self, workflow: str, *, event: str, branch: str | None = None
    ) -> list[dict[str, Any]]:
        """The most recent runs of `workflow` (first page, newest first)."""
        params: dict[str, Any] = {"event": event, "per_page": 50}
        if branch:
            params["branch"] = branch
        body = self._client.get(self._repo("actions", "workflows", workflow, "runs"), params).json()
        runs: list[dict[str, Any]] = body.get("workflow_runs", [])
        return runs

    def newest_successful_push_run(
        self, workflow: str, branch: str, *, etag: str | None = None
    ) -> Conditional[dict[str, Any]]:
        """The newest successful `push` run of `workflow` on `branch` (value None: no such
        run), asked conditionally: unchanged answers cost no rate limit."""
        response = self._client.get(
            self._repo("actions", "workflows", workflow, "runs"),
            {"branch": branch, "event": "push", "status": "success", "per_page": 1},
            etag=etag,
        )
        if response.status_code == 304:
            return Conditional(False, None, etag)
        runs = response.json().get("workflow_runs") or []
        return Conditional(True, runs[0] if runs else None, response.headers.get("etag"))

    def review_protection_rule(
        self, run_id: int, *, environment: str, approved: bool, comment: str
    ) -> None:
        """Answer a deployment protection rule request for a run (approve or reject)."""
        self._client.post(
            self._repo("actions", "runs", run_id, "deployment_protection_rule"),
            {
                "environment_name": environment,
                "state": "approved" if approved else "rejected",
                "comment": comment[:1000],
            },
        )

    def run(self, run_id: int) -> dict[str, Any]:
        body: dict[str, Any] = self._client.get(self._repo("actions", "runs", run_id)).json()
        return body

    def create_status(
        self, sha: str, *, state: str, context: str, description: str, target_url: str | None
    ) -> None:
        body: dict[str, Any] = {
            "state": state,
            "context": context,
            "description": description[:140],
        }
        if target_url:
            body["target_url"] = target_url
        self._client.post(self._repo("statuses", sha), body)

    def pulls_for_commit(self, sha: str) -> list[dict[str, Any]]:
        pulls: list[dict[str, Any]] = self._client.get(self._repo("commits", sha, "pulls")).json()
        return pulls

    def open_issues_with_label(self, label: str) -> list[dict[str, Any]]:
        issues: list[dict[str, Any]] = []
        for page in self._client.paginate(self._repo("issues"), {"labels": label, "state": "open"}):
            issues.extend(item for item in page.json() if "pull_request" not in item)
        return issues

    def create_issue(self, title: str, body: str, labels: list[str]) -> int:
        response = self._client.post(
            self._repo("issues"), {"title": title, "body": body, "labels": labels}
        )
        return int(response.json()["number"])

    def create_comment(self, issue_number: int, body: str) -> None:
        self._client.post(self._repo("issues", issue_number, "comments"), {"body": body})

    def permission(self, username: str) -> Permission | None:
        """The user's role on the repository, or None if they have none."""
        try:
            body = self._client.get(self._repo("collaborators", username, "permission")).json()
        except NotFound:
            return None
        # role_name is the fine-grained role; a custom role's name is free text, so fall
        # back to the legacy permission, which is always admin, write, read or none.
        known = {p.value for p in Permission}
        for role in (body.get("role_name"), _LEGACY_PERMISSION.get(str(body.get("permission")))):
            if isinstance(role, str) and role in known:
                return Permission(role)
        return None


class GitHubApp:
    """The App: its JWT, installation tokens, and clients per installation."""

    def __init__(
        self,
        api_url: str,
        app_id: str,
        private_key_pem: str,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timeout_s: float = 10.0,
    ) -> None:
        self._api_url = api_url
        self._app_id = app_id
        self._key = private_key_pem
        self._clock = clock
        self._timeout_s = timeout_s
        self._app_client = GitHubClient(api_url, self._jwt_header, timeout_s=timeout_s)
        self._tokens = TokenCache(self._fetch_token, clock)
        self._installation_clients: dict[int, GitHubClient] = {}
        self._slug: str | None = None

    def _jwt_header(self) -> str:
        return "Bearer " + app_jwt(self._app_id, self._key, self._clock())

    def _fetch_token(self, installation_id: int) -> InstallationToken:
        body = self._app_client.post(
            _path("app", "installations", installation_id, "access_tokens"), {}
        ).json()
        expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
        return InstallationToken(token=body["token"], expires_at=expires)

    def app_slug(self) -> str:
        """The App's slug (its bot user is `<slug>[bot]`), asked of GitHub once."""
        if self._slug is None:
            body = self._app_client.get(_path("app", "installations"), {"per_page": 1}).json()
            slugs = [i.get("app_slug") for i in body if isinstance(i, dict)]
            if not slugs or not isinstance(slugs[0], str):
                raise GitHubError(0, "the App has no installation to learn its slug from")
            self._slug = slugs[0]
        return self._slug

    def installation_ids(self) -> list[int]:
        return [
            int(installation["id"])
            for page in self._app_client.paginate(_path("app", "installations"))
            for installation in page.json()
        ]

    def installed_repos(self, installation_id: int) -> list[InstalledRepo]:
        """The repositories an installation can reach (the App's token for it)."""
        client = self._installation_client(installation_id)
        return [
            InstalledRepo(
                int(repo["id"]),
                str(repo["full_name"]),
                str(repo.get("default_branch") or "main"),
                installation_id,
                str(repo["pushed_at"]) if repo.get("pushed_at") else None,
            )
            for page in client.paginate(_path("installation", "repositories"))
            for repo in page.json().get("repositories", [])
        ]

    def hook_deliveries(self, cursor: str | None = None) -> tuple[list[HookDelivery], str | None]:
        """One page of the App's webhook deliveries, newest first, and the next cursor."""
        params: dict[str, Any] = {"per_page": 100}
        if cursor:
            params["cursor"] = cursor
        response = self._app_client.get(_path("app", "hook", "deliveries"), params)
        page = [
            HookDelivery(
                id=int(d["id"]),
                guid=str(d["guid"]),
                delivered_at=datetime.fromisoformat(str(d["delivered_at"]).replace("Z", "+00:00")),
                redelivery=bool(d.get("redelivery")),
                status_code=int(d.get("status_code") or 0),
                event=str(d.get("event") or ""),
            )
            for d in response.json()
        ]
        following = response.links.get("next", {}).get("url")
        next_cursor = None
        if following:
            cursors = parse_qs(urlsplit(following).query).get("cursor")
            next_cursor = cursors[0] if cursors else None
        return page, next_cursor

    def hook_delivery_request(self, delivery_id: int) -> tuple[dict[str, str], dict[str, Any]]:
        """The headers and payload GitHub sent in one delivery."""
        body = self._app_client.get(_path("app", "hook", "deliveries", delivery_id)).json()
        request = body.get("request") or {}
        headers = {str(k).lower(): str(v) for k, v in (request.get("headers") or {}).items()}
        payload = request.get("payload")
        return headers, payload if isinstance(payload, dict) else {}

    def redeliver(self, delivery_id: int) -> None:
        self._app_client.post(_path("app", "hook", "deliveries", delivery_id, "attempts"), None)

    def _installation_client(self, installation_id: int) -> GitHubClient:
        client = self._installation_clients.get(installation_id)
        if client is None:
            client = GitHubClient(
                self._api_url,
                lambda: "token " + self._tokens.token(installation_id),
                timeout_s=self._timeout_s,
                on_unauthorized=lambda: self._tokens.forget(installation_id),
            )
            self._installation_clients[installation_id] = client
        return client

    def repo(self, installation_id: int, full_name: str) -> RepoApi:
        owner, _, name = full_name.partition("/")
        return RepoApi(self._installation_client(installation_id), owner, name)
