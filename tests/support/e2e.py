"""Helpers of the end-to-end tests: the function's environment and governed repositories.

The fixtures that serve the function and the fake GitHub live in tests/conftest.py.
"""

from __future__ import annotations

import itertools
import uuid

from tests.support.fake_github import FakeGitHub
from tests.support.governed import BASE_POLICY, DEPLOY_FILE, VERIFY_FILE, Governed
from tests.support.keys import rsa_key_pair
from tests.support.replay_check import register

APP_ID = "424242"
SECRET = "e2e-" + uuid.uuid4().hex
_repo_ids = itertools.count(5000)


def function_env(fake: FakeGitHub, store_url: str, **extra: str) -> dict[str, str]:
    private, _public = rsa_key_pair()
    return {
        "GOVERNOR_STORE_URL": store_url,
        "GOVERNOR_WEBHOOK_SECRET": SECRET,
        "GOVERNOR_GITHUB_APP_ID": APP_ID,
        "GOVERNOR_GITHUB_PRIVATE_KEY": private,
        "GOVERNOR_GITHUB_API_URL": fake.url,
        "GOVERNOR_GITHUB_TIMEOUT_S": "2",
        **extra,
    }


def new_repo(fake: FakeGitHub, store_url: str, webhook_url: str) -> Governed:
    repo_id = next(_repo_ids)
    repo = fake.add_repo("octo", f"app-{repo_id}", repo_id=repo_id, installation_id=7)
    repo.add_workflow(VERIFY_FILE, name="Verify main", workflow_id=repo_id * 10 + 1)
    repo.add_workflow(
        DEPLOY_FILE, name="Deploy", workflow_id=repo_id * 10 + 2, run_name_template="Deploy {sha}"
    )
    register(store_url, repo_id)  # its stored evaluations are replayed after the test
    return Governed(fake, repo, store_url, webhook_url, SECRET)


def deployed_base(gov: Governed, policy: str = BASE_POLICY) -> str:
    """Production at a first commit whose policy (the trusted one from then on) is `policy`."""
    base = gov.commit("base", ["README.md"], policy=policy)
    gov.in_production(base)
    return base
