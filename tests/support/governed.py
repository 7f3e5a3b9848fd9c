"""A governed repository on the fake GitHub, and the webhook deliveries GitHub would send.

Payloads start from GitHub's real examples (tests/fixtures/github/webhooks) and change
only what a scenario needs: ids, names, SHAs, conclusions.
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from governor.events import signature_for
from governor.ledger import Ledger
from governor.state import ReleaseState, deploy_succeeded
from governor.store import open_store

from tests.support.fake_github import FakeGitHub, FakeRepo

WEBHOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "github" / "webhooks"
DEPLOY_FILE = "deploy.yml"
VERIFY_FILE = "verify-main.yml"
_ids = itertools.count(1)

BASE_POLICY = f"""
deploy_workflow: {DEPLOY_FILE}
verification_workflow: {VERIFY_FILE}
"""


def sha_for(label: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_OID, label).hex + "00000000"


@dataclass
class Governed:
    fake: FakeGitHub
    repo: FakeRepo
    store_url: str
    webhook_url: str
    secret: str

    # -- set-up ----------------------------------------------------------------------

    def commit(self, label: str, files: list[str], *, policy: str = BASE_POLICY) -> str:
        """A commit on main changing `files`, with the policy file at that SHA."""
        sha = sha_for(f"{self.repo.full_name}:{label}")
        self.repo.add_commit(sha, files=[{"filename": f, "status": "modified"} for f in files])
        self.repo.set_file(".github/release-governor.yml", policy, ref=sha)
        self.repo.set_file(".github/release-governor.yml", policy, ref="main")
        return sha

    def in_production(self, sha: str) -> None:
        """Production is at `sha` already (as a previous deploy would have left it)."""
        now = datetime.now(UTC)
        Ledger(open_store(self.store_url)).transition(
            self.repo.repo_id, self.repo.full_name, lambda s: deploy_succeeded(s, sha, now)
        )

    def state(self) -> ReleaseState:
        return Ledger(open_store(self.store_url)).read_state(self.repo.repo_id, self.repo.full_name)

    # -- deliveries ------------------------------------------------------------------

    def verified(self, sha: str, **run_changes: Any) -> dict[str, Any]:
        """`workflow_run` completed for the verification workflow, on main, by push."""
        payload = json.loads((WEBHOOKS / "workflow_run.completed.1.json").read_text())
        repository = self._repository(payload["repository"])
        run = payload["workflow_run"]
        run.update(
            {
                "id": 900000 + next(_ids),
                "name": "Verify main",
                "path": f".github/workflows/{VERIFY_FILE}",
                "display_title": f"Verify {sha[:7]}",
                "event": "push",
                "head_branch": self.repo.default_branch,
                "head_sha": sha,
                "status": "completed",
                "conclusion": "success",
                "run_attempt": 1,
                "head_repository": self._repository(run["head_repository"]),
                "repository": self._repository(run["repository"]),
            }
        )
        run.update(run_changes)
        payload.update(
            {
                "action": "completed",
                "repository": repository,
                "installation": {"id": self.repo.installation_id},
            }
        )
        return payload

    def _repository(self, template: dict[str, Any]) -> dict[str, Any]:
        repository = copy.deepcopy(template)
        repository.update(
            {
                "id": self.repo.repo_id,
                "name": self.repo.name,
                "full_name": self.repo.full_name,
                "default_branch": self.repo.default_branch,
            }
        )
        repository.setdefault("owner", {})["login"] = self.repo.owner
        return repository

    def send(
        self, payload: dict[str, Any], event: str = "workflow_run", guid: str | None = None
    ) -> httpx.Response:
        body = json.dumps(payload).encode()
        return httpx.post(
            self.webhook_url,
            content=body,
            headers={
                "content-type": "application/json",
                "x-github-event": event,
                "x-github-delivery": guid or str(uuid.uuid4()),
                "x-hub-signature-256": signature_for(self.secret.encode(), body),
            },
            timeout=60,
        )

    # -- what GitHub saw ---------------------------------------------------------------

    def dispatches(self) -> list[dict[str, Any]]:
        return [
            c.json or {}
            for c in self.fake.calls_to("actions/create-workflow-dispatch")
            if c.status < 300 and f"/repos/{self.repo.full_name}/" in c.path
        ]

    def our_statuses(self, sha: str) -> list[dict[str, Any]]:
        return [s for s in self.repo.statuses(sha) if s["context"] == "release-governor"]
