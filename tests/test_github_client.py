"""The GitHub client against the fake GitHub: every call in the contract, and GitHub's ways.

The fake checks each request against GitHub's OpenAPI description (method, path
template, query parameters, JSON body schema, API version header) and records a
violation otherwise; every test here ends with none recorded.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from governor.github.api import COMPARE_FILE_LIMIT, GitHubApp, RepoApi
from governor.github.client import GitHubClient, GitHubUnavailable, OutcomeUnknown, RateLimited
from governor.policy import Permission

from tests.support.fake_github import FakeGitHub, FakeRepo
from tests.support.keys import rsa_key_pair

APP_ID = "31337"
SHA1, SHA2, SHA3 = "1" * 40, "2" * 40, "3" * 40


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    _private, public = rsa_key_pair()
    with FakeGitHub(app_id=APP_ID, public_key_pem=public) as github:
        yield github
        assert github.violations == []


@pytest.fixture
def repo(fake: FakeGitHub) -> FakeRepo:
    repo = fake.add_repo("octo", "app", repo_id=77, installation_id=3)
    repo.add_commit(SHA1, files=[{"filename": "README.md", "status": "added"}])
    repo.add_commit(SHA2, files=[{"filename": "src/a.py", "status": "added"}])
    repo.add_commit(
        SHA3,
        files=[{"filename": "src/b.py", "status": "renamed", "previous_filename": "src/a.py"}],
    )
    repo.add_workflow("deploy.yml", name="Deploy", workflow_id=1)
    return repo


@pytest.fixture
def api(fake: FakeGitHub, repo: FakeRepo) -> RepoApi:
    private, _public = rsa_key_pair()
    return GitHubApp(fake.url, APP_ID, private, timeout_s=2).repo(3, "octo/app")


def test_every_call_the_governor_makes_is_in_githubs_description(
    fake: FakeGitHub, repo: FakeRepo, api: RepoApi
) -> None:
    repo.set_file(".github/release-governor.yml", "deploy_workflow: deploy.yml\n", ref=SHA3)
    repo.add_pull(5, user="author", head_sha="9" * 40, merge_commit_sha=SHA3)
    repo.set_permission("maint", "maintain")
    repo.open_issue("Production is degraded", ["production-degraded"])

    assert api.repository()["default_branch"] == "main"
    assert api.file_text(".github/release-governor.yml", SHA3) == "deploy_workflow: deploy.yml\n"
    assert api.file_text("missing.yml", SHA3) is None
    comparison = api.compare(SHA1, SHA3)
    assert comparison.status == "ahead" and comparison.complete
    assert {(f.filename, f.previous_filename) for f in comparison.files} == {("src/b.py", None)}
    dispatched = api.dispatch("deploy.yml", "main", {"sha": SHA3})
    assert dispatched.run_id is not None
    runs = api.workflow_runs("deploy.yml", event="workflow_dispatch")
    assert [r["id"] for r in runs] == [dispatched.run_id]
    assert api.run(dispatched.run_id)["display_title"] == f"Deploy {SHA3}"
    api.create_status(
        SHA3, state="success", context="release-governor", description="ok", target_url=None
    )
    assert [p["number"] for p in api.pulls_for_commit(SHA3)] == [5]
    assert len(api.open_issues_with_label("production-degraded")) == 1
    number = api.create_issue("Deploy failure: 3333333", "body", ["deploy-failure"])
    api.create_comment(number, "again")
    assert api.permission("maint") is Permission.MAINTAIN
    assert api.permission("stranger") is None

    used = {call.operation_id for call in fake.calls}
    assert used >= {
        "apps/create-installation-access-token",
        "repos/get",
        "repos/get-content",
        "repos/compare-commits-with-basehead",
        "actions/create-workflow-dispatch",
        "actions/list-workflow-runs",
        "actions/get-workflow-run",
        "repos/create-commit-status",
        "repos/list-pull-requests-associated-with-commit",
        "issues/list-for-repo",
        "issues/create",
        "issues/create-comment",
        "repos/get-collaborator-permission-level",
    }
    assert fake.installation_tokens_issued() == 1, "the token is cached"
    for call in fake.calls:
        assert call.headers["x-github-api-version"] == "2022-11-28"
        assert call.headers["accept"] == "application/vnd.github+json"
        assert call.headers["user-agent"].startswith("release-governor/")


def test_a_request_outside_the_description_is_caught(fake: FakeGitHub, repo: FakeRepo) -> None:
    private, _public = rsa_key_pair()
    app = GitHubApp(fake.url, APP_ID, private)
    api = app.repo(3, "octo/app")
    api.repository()  # a valid call first: the token exists
    client: GitHubClient = api._client
    with pytest.raises(Exception, match=r"404|400"):
        client.get("/repos/octo/app/secret-scanning/alerts")
    assert any(
        "no operation for GET /repos/octo/app/secret-scanning/alerts" in v for v in fake.violations
    )
    fake.violations.clear()


def test_a_comparison_of_more_than_300_files_is_incomplete(repo: FakeRepo, api: RepoApi) -> None:
    many = [
        {"filename": f"gen/f{i}.txt", "status": "added"} for i in range(COMPARE_FILE_LIMIT + 20)
    ]
    repo.add_commit("4" * 40, files=many)
    comparison = api.compare(SHA3, "4" * 40)
    assert not comparison.complete
    assert len(comparison.files) == COMPARE_FILE_LIMIT


def test_reads_are_retried_on_5xx(fake: FakeGitHub, api: RepoApi) -> None:
    api.repository()
    fake.fail_next("repos/get", 502, times=2)
    assert api.repository()["id"] == 77
    statuses = [c.status for c in fake.calls_to("repos/get")]
    assert statuses == [200, 502, 502, 200]


def test_reads_give_up_after_three_attempts(fake: FakeGitHub, api: RepoApi) -> None:
    api.repository()
    fake.fail_next("repos/get", 503, times=3)
    with pytest.raises(GitHubUnavailable):
        api.repository()


def test_writes_are_not_retried_blindly(fake: FakeGitHub, api: RepoApi) -> None:
    fake.fail_next("issues/create", 502)
    with pytest.raises(OutcomeUnknown):
        api.create_issue("t", "b", [])
    assert len(fake.calls_to("issues/create")) == 1


def test_a_short_rate_limit_is_waited_out(fake: FakeGitHub, api: RepoApi) -> None:
    api.repository()
    fake.rate_limit_next("repos/get", retry_after_s=1)
    assert api.repository()["id"] == 77
    assert [c.status for c in fake.calls_to("repos/get")] == [200, 429, 200]


def test_a_long_rate_limit_is_reported_with_its_wait(fake: FakeGitHub, api: RepoApi) -> None:
    api.repository()
    fake.rate_limit_next("repos/get", retry_after_s=300)
    with pytest.raises(RateLimited) as info:
        api.repository()
    assert info.value.retry_after_s == 300


def test_listings_follow_every_page(repo: FakeRepo, api: RepoApi) -> None:
    for i in range(130):
        repo.open_issue(f"incident {i}", ["production-degraded"])
    assert len(api.open_issues_with_label("production-degraded")) == 130


def test_a_token_github_no_longer_accepts_is_replaced_once(fake: FakeGitHub, api: RepoApi) -> None:
    api.repository()
    fake.expire_installation_tokens()  # revoked early: the cache still believes in it
    assert api.repository()["id"] == 77
    assert fake.installation_tokens_issued() == 2
    assert [c.status for c in fake.calls_to("repos/get")] == [200, 401, 200]
