"""The fake GitHub answers like GitHub: pinned here over real HTTP, against the OpenAPI subset.

Every answer these tests receive is also validated against the documented response schema
of its operation (see `_check_response`), so the fake cannot drift from GitHub's shapes.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest
from governor.events import signature_for

from tests.support.fake_github import (
    FakeGitHub,
    FakeRepo,
    GitHubError,
    iter_link_header,
    validate_webhook,
)
from tests.support.keys import rsa_key_pair
from tests.support.openapi_contract import (
    ContractViolation,
    OpenApiContract,
    nullable_to_jsonschema,
)
from tests.support.webhook_receiver import Reply, WebhookReceiver

APP_ID = "424242"
OWNER, NAME = "acme", "shop"
HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
BOT = "release-governor[bot]"


def sha(n: int) -> str:
    return f"{n:040x}"


@pytest.fixture(scope="module")
def key_pair() -> tuple[str, str]:
    return rsa_key_pair()


@pytest.fixture(scope="module")
def contract() -> OpenApiContract:
    return OpenApiContract()


@pytest.fixture
def fake(key_pair: tuple[str, str], contract: OpenApiContract) -> Iterator[FakeGitHub]:
    with FakeGitHub(app_id=APP_ID, public_key_pem=key_pair[1], contract=contract) as server:
        yield server
        # Tests that provoke violations assert and clear them; any other one is a bug.
        assert server.violations == []


@pytest.fixture
def repo(fake: FakeGitHub) -> FakeRepo:
    return fake.add_repo(OWNER, NAME, repo_id=9001, installation_id=7)


def app_jwt(
    private_pem: str, *, iss: Any = APP_ID, iat_delta: int = -60, exp_delta: int = 540
) -> str:
    now = int(time.time())
    claims = {"iat": now + iat_delta, "exp": now + exp_delta, "iss": iss}
    # PyJWT refuses to encode a non-string iss; sign the raw payload to test that case too.
    return jwt.api_jws.encode(json.dumps(claims).encode(), private_pem, algorithm="RS256")


def _check_response(contract: OpenApiContract) -> Any:
    def check(response: httpx.Response) -> None:
        response.read()
        request = response.request
        try:
            contract.validate_response(
                request.method,
                request.url.raw_path.decode(),
                response.status_code,
                response.content,
            )
        except ContractViolation as exc:
            if not str(exc).startswith("no operation for"):
                raise

    return check


@pytest.fixture
def http(fake: FakeGitHub, contract: OpenApiContract) -> Iterator[httpx.Client]:
    """A bare client sending GitHub's recommended headers, checking every answer's shape."""
    with httpx.Client(
        base_url=fake.url,
        headers=HEADERS,
        timeout=5,
        event_hooks={"response": [_check_response(contract)]},
    ) as client:
        yield client


def installation_token(http: httpx.Client, private_pem: str, installation_id: int = 7) -> str:
    response = http.post(
        f"/app/installations/{installation_id}/access_tokens",
        headers={"Authorization": f"Bearer {app_jwt(private_pem)}"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


@pytest.fixture
def gh(http: httpx.Client, repo: FakeRepo, key_pair: tuple[str, str]) -> httpx.Client:
    """The client, authenticated with an installation token of the repo's installation."""
    http.headers["Authorization"] = f"token {installation_token(http, key_pair[0])}"
    return http


R = f"/repos/{OWNER}/{NAME}"


# ----------------------------------------------------------------------------- auth


def test_installation_token_is_issued_like_github(
    fake: FakeGitHub, repo: FakeRepo, http: httpx.Client, key_pair: tuple[str, str]
) -> None:
    response = http.post(
        "/app/installations/7/access_tokens",
        headers={"Authorization": f"Bearer {app_jwt(key_pair[0])}"},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["token"].startswith("ghs_") and len(body["token"]) == 40
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert body["expires_at"].endswith("Z")
    assert abs(expires.timestamp() - (time.time() + 3600)) < 5
    assert body["repository_selection"] == "all"
    assert body["permissions"]["statuses"] == "write"
    assert fake.installation_tokens_issued() == 1

    unknown = http.post(
        "/app/installations/99/access_tokens",
        headers={"Authorization": f"Bearer {app_jwt(key_pair[0])}"},
    )
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "Not Found"
    assert unknown.json()["documentation_url"].startswith("https://docs.github.com/")
    assert fake.installation_tokens_issued() == 1


def test_every_answer_carries_rate_limit_headers(gh: httpx.Client) -> None:
    first = gh.get(R)
    second = gh.get(f"{R}/issues")
    for response in (first, second):
        assert response.headers["x-ratelimit-limit"] == "5000"
        assert response.headers["x-ratelimit-resource"] == "core"
        assert int(response.headers["x-ratelimit-reset"]) > time.time()
        assert response.headers["x-github-request-id"]
    assert (
        int(second.headers["x-ratelimit-remaining"])
        == int(first.headers["x-ratelimit-remaining"]) - 1
    )
    assert int(second.headers["x-ratelimit-used"]) == int(first.headers["x-ratelimit-used"]) + 1


@pytest.mark.parametrize(
    ("claims", "wrong_key"),
    [
        ({}, True),  # signed by another key
        ({"iss": "1"}, False),  # another app
        ({"iss": int(APP_ID)}, False),  # GitHub Apps' iss is sent as a string here
        ({"iat_delta": -700, "exp_delta": -10}, False),  # expired
        ({"iat_delta": -60, "exp_delta": 3600}, False),  # lives longer than 10 minutes
    ],
)
def test_a_bad_app_jwt_is_refused(
    http: httpx.Client,
    repo: FakeRepo,
    key_pair: tuple[str, str],
    claims: dict[str, Any],
    wrong_key: bool,
) -> None:
    private = key_pair[0]
    if wrong_key:
        private, _public = rsa_key_pair("not-the-app")
    response = http.post(
        "/app/installations/7/access_tokens",
        headers={"Authorization": f"Bearer {app_jwt(private, **claims)}"},
    )
    assert response.status_code == 401
    assert set(response.json()) >= {"message", "documentation_url"}


def test_app_endpoints_want_a_jwt_and_repo_endpoints_an_installation_token(
    fake: FakeGitHub, http: httpx.Client, repo: FakeRepo, key_pair: tuple[str, str]
) -> None:
    token = installation_token(http, key_pair[0])
    as_token = http.get("/app/installations", headers={"Authorization": f"token {token}"})
    assert as_token.status_code == 401
    assert as_token.json()["message"] == "A JSON web token could not be decoded"

    as_jwt = http.get(R, headers={"Authorization": f"Bearer {app_jwt(key_pair[0])}"})
    assert as_jwt.status_code == 401
    assert as_jwt.json()["message"] == "Bad credentials"
    assert http.get(R, headers={"Authorization": "token ghs_madeup"}).status_code == 401
    assert http.get(R).status_code == 401

    assert http.get(R, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    fake.expire_installation_tokens()
    expired = http.get(R, headers={"Authorization": f"token {token}"})
    assert expired.status_code == 401 and expired.json()["message"] == "Bad credentials"


def test_a_token_only_reaches_its_installations_repositories(
    fake: FakeGitHub, http: httpx.Client, repo: FakeRepo, key_pair: tuple[str, str]
) -> None:
    fake.add_repo("other", "thing", repo_id=5, installation_id=8)
    token = installation_token(http, key_pair[0], installation_id=8)
    auth = {"Authorization": f"token {token}"}
    assert http.get("/repos/other/thing", headers=auth).status_code == 200
    assert http.get(R, headers=auth).status_code == 404
    listed = http.get("/installation/repositories", headers=auth).json()
    assert listed["total_count"] == 1
    assert listed["repositories"][0]["full_name"] == "other/thing"


# ------------------------------------------------------------------------- contents


def test_contents_come_base64_encoded_with_newlines_every_60_chars(
    gh: httpx.Client, repo: FakeRepo
) -> None:
    text = "deploy:\n  window: mon-thu\n" + "# é ünïcode ✓ " * 20
    repo.add_commit(sha(1), files=[{"filename": ".github/release-policy.yml", "status": "added"}])
    repo.set_file(".github/release-policy.yml", text, ref="main")

    response = gh.get(f"{R}/contents/.github/release-policy.yml", params={"ref": "main"})
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "file" and body["encoding"] == "base64"
    assert body["name"] == "release-policy.yml"
    assert body["path"] == ".github/release-policy.yml"
    assert body["size"] == len(text.encode())
    lines = body["content"].split("\n")
    assert lines[-1] == "" and all(len(line) == 60 for line in lines[:-2])
    assert base64.b64decode(body["content"]).decode() == text
    assert len(body["sha"]) == 40

    by_sha = gh.get(f"{R}/contents/.github/release-policy.yml", params={"ref": sha(1)})
    assert by_sha.json()["content"] == body["content"]
    repo.add_commit(sha(2), files=[{"filename": "app.py", "status": "modified"}])
    later = gh.get(f"{R}/contents/.github/release-policy.yml", params={"ref": sha(2)})
    assert later.status_code == 200  # files carry over to descendant commits

    missing = gh.get(f"{R}/contents/nope.yml", params={"ref": "main"})
    assert missing.status_code == 404 and missing.json()["message"] == "Not Found"
    assert (
        gh.get(f"{R}/contents/.github/release-policy.yml", params={"ref": "nope"}).status_code
        == 404
    )


# -------------------------------------------------------------------------- compare


def add_branching_history(repo: FakeRepo) -> None:
    """main: sha(1) - sha(2) - sha(3); hotfix: sha(4), forked from sha(2)."""
    repo.add_commit(sha(1), files=[{"filename": "a.py", "status": "added"}])
    repo.add_commit(sha(2), files=[{"filename": "b.py", "status": "added"}])
    repo.add_commit(sha(3), files=[{"filename": "a.py", "status": "modified"}])
    repo.add_commit(
        sha(4), files=[{"filename": "c.py", "status": "added"}], parent=sha(2), branch="hotfix"
    )


def test_compare_reports_ahead_behind_identical_and_diverged(
    gh: httpx.Client, repo: FakeRepo
) -> None:
    add_branching_history(repo)

    ahead = gh.get(f"{R}/compare/{sha(1)}...{sha(3)}").json()
    assert ahead["status"] == "ahead"
    assert (ahead["ahead_by"], ahead["behind_by"], ahead["total_commits"]) == (2, 0, 2)
    assert [c["sha"] for c in ahead["commits"]] == [sha(2), sha(3)]
    assert ahead["merge_base_commit"]["sha"] == sha(1)
    assert [(f["filename"], f["status"]) for f in ahead["files"]] == [
        ("a.py", "modified"),
        ("b.py", "added"),
    ]

    behind = gh.get(f"{R}/compare/{sha(3)}...{sha(1)}").json()
    assert (behind["status"], behind["ahead_by"], behind["behind_by"]) == ("behind", 0, 2)
    assert behind["commits"] == [] and behind["files"] == []

    identical = gh.get(f"{R}/compare/main...{sha(3)}").json()
    assert (identical["status"], identical["total_commits"]) == ("identical", 0)

    diverged = gh.get(f"{R}/compare/main...hotfix").json()
    assert diverged["status"] == "diverged"
    assert (diverged["ahead_by"], diverged["behind_by"]) == (1, 1)
    assert diverged["merge_base_commit"]["sha"] == sha(2)
    assert [f["filename"] for f in diverged["files"]] == ["c.py"]

    unknown = gh.get(f"{R}/compare/{sha(1)}...{sha(99)}")
    assert unknown.status_code == 404 and unknown.json()["message"] == "Not Found"


def test_tags_resolve_by_full_name_and_after_branches_by_bare_name(repo: FakeRepo) -> None:
    repo.add_commit(sha(1), files=[])
    repo.add_commit(sha(2), files=[])
    repo.set_tag("main", sha(1))  # a tag with the branch's name
    repo.set_tag("v1.0", sha(2))

    assert repo.resolve("main") == sha(2)  # the branch, not the tag
    assert repo.resolve("refs/heads/main") == sha(2)
    assert repo.resolve("refs/tags/main") == sha(1)
    assert repo.resolve("v1.0") == repo.resolve("refs/tags/v1.0") == sha(2)
    assert repo.resolve("refs/heads/v1.0") is None  # a tag is not a branch
    assert repo.resolve("refs/tags/nope") is None
    assert repo.resolve("refs/tags/" + sha(1)) is None  # nor is a sha a tag
    repo.set_tag("v1.0", sha(1))  # a tag can be moved
    assert repo.resolve("v1.0") == sha(1)
    with pytest.raises(ValueError, match="unknown commit"):
        repo.set_tag("v2.0", sha(9))


def test_compare_accepts_fully_qualified_refs_on_either_side(
    gh: httpx.Client, repo: FakeRepo
) -> None:
    add_branching_history(repo)
    # sha(5) is on a tag and on a branch built on main's tip
    repo.add_commit(
        sha(5), files=[{"filename": "d.py", "status": "added"}], parent=sha(3), branch="rc"
    )
    repo.set_tag("v2.0-rc1", sha(5))
    repo.set_tag("main", sha(1))

    def compare(basehead: str) -> tuple[str, int, int]:
        response = gh.get(f"{R}/compare/{basehead}")
        assert response.status_code == 200, response.text
        body = response.json()
        return body["status"], body["ahead_by"], body["behind_by"]

    assert compare("refs/heads/main...refs/tags/v2.0-rc1") == ("ahead", 1, 0)
    assert compare(f"refs/heads/main...{sha(5)}") == ("ahead", 1, 0)
    assert compare("refs/heads/main...refs/heads/rc") == ("ahead", 1, 0)
    assert compare(f"refs/heads/main...{sha(4)}") == ("diverged", 1, 1)
    assert compare("refs/heads/main...refs/heads/hotfix") == ("diverged", 1, 1)
    assert compare(f"refs/heads/main...{sha(2)}") == ("behind", 0, 1)
    assert compare(f"refs/heads/main...{sha(3)}") == ("identical", 0, 0)
    assert compare("refs/heads/main...main") == ("identical", 0, 0)
    assert compare("refs/tags/v2.0-rc1...refs/heads/main") == ("behind", 0, 1)
    # the tag `main` is reached by its full name only
    assert compare("refs/tags/main...main") == ("ahead", 2, 0)
    assert compare("main...refs/tags/main") == ("behind", 0, 2)
    files = gh.get(f"{R}/compare/refs/heads/main...refs/tags/v2.0-rc1").json()["files"]
    assert [f["filename"] for f in files] == ["d.py"]

    for basehead in ("refs/heads/main...refs/tags/nope", "refs/tags/rc...main"):
        missing = gh.get(f"{R}/compare/{basehead}")
        assert missing.status_code == 404 and missing.json()["message"] == "Not Found"


def test_compare_caps_files_at_300_and_paginates_commits(gh: httpx.Client, repo: FakeRepo) -> None:
    repo.add_commit(sha(1), files=[])
    for n in range(2, 7):
        files = [{"filename": f"pkg{n}/m{i:03}.py", "status": "added"} for i in range(80)]
        repo.add_commit(sha(n), files=files)
    assert repo.changed_file_count(sha(1), sha(6)) == 400

    first = gh.get(f"{R}/compare/{sha(1)}...{sha(6)}", params={"per_page": 2})
    body = first.json()
    assert len(body["files"]) == 300 < repo.changed_file_count(sha(1), sha(6))
    assert body["total_commits"] == 5
    assert [c["sha"] for c in body["commits"]] == [sha(2), sha(3)]
    links = dict(iter_link_header(first.headers["link"]))
    assert set(links) == {"next", "last"}
    assert "page=3" in links["last"] and "per_page=2" in links["last"]

    last = gh.get(links["last"])
    assert [c["sha"] for c in last.json()["commits"]] == [sha(6)]
    assert last.json()["files"] == []  # files come with page 1 only
    assert {"prev", "first"} <= set(dict(iter_link_header(last.headers["link"])))


def test_compare_files_are_the_net_change_of_the_range(gh: httpx.Client, repo: FakeRepo) -> None:
    repo.add_commit(sha(1), files=[{"filename": "old.py", "status": "added"}])
    repo.add_commit(
        sha(2),
        files=[
            {"filename": "tmp.txt", "status": "added"},
            {"filename": "new.py", "status": "added", "additions": 2},
        ],
    )
    repo.add_commit(
        sha(3),
        files=[
            {"filename": "tmp.txt", "status": "removed"},
            {"filename": "new.py", "status": "modified", "additions": 3, "deletions": 1},
            {"filename": "moved.py", "status": "renamed", "previous_filename": "old.py"},
        ],
    )
    files = gh.get(f"{R}/compare/{sha(1)}...{sha(3)}").json()["files"]
    summary = [(f["filename"], f["status"], f.get("previous_filename")) for f in files]
    assert summary == [("moved.py", "renamed", "old.py"), ("new.py", "added", None)]
    assert (files[1]["additions"], files[1]["deletions"], files[1]["changes"]) == (5, 1, 6)


def test_compare_without_per_page_lists_up_to_250_commits(gh: httpx.Client, repo: FakeRepo) -> None:
    for n in range(1, 262):
        repo.add_commit(sha(n), files=[])
    first = gh.get(f"{R}/compare/{sha(1)}...{sha(261)}")
    assert first.json()["total_commits"] == 260
    assert len(first.json()["commits"]) == 250
    following = dict(iter_link_header(first.headers["link"]))["next"]
    assert [c["sha"] for c in gh.get(following).json()["commits"]] == [
        sha(n) for n in range(252, 262)
    ]


# -------------------------------------------------------------------------- actions


def test_dispatch_answers_200_with_run_details_or_204_without(
    gh: httpx.Client, repo: FakeRepo
) -> None:
    repo.add_commit(sha(1), files=[])
    repo.add_workflow("deploy.yml", name="Deploy", workflow_id=55)
    dispatches = f"{R}/actions/workflows/deploy.yml/dispatches"

    detailed = gh.post(
        dispatches, json={"ref": "main", "inputs": {"sha": sha(1)}, "return_run_details": True}
    )
    assert detailed.status_code == 200
    details = detailed.json()
    assert details["workflow_run_id"] == 1000
    assert details["run_url"].endswith(f"{R}/actions/runs/1000")

    quiet = gh.post(f"{R}/actions/workflows/55/dispatches", json={"ref": "main"})
    assert quiet.status_code == 204 and quiet.content == b""

    runs = repo.dispatched_runs("deploy.yml")
    assert [run["id"] for run in runs] == [1000, 1001]
    assert runs[0]["display_title"] == f"Deploy {sha(1)}"
    assert runs[1]["display_title"] == "Deploy"  # no sha input: the workflow name
    assert runs[0]["inputs"] == {"sha": sha(1)}
    run = gh.get(f"{R}/actions/runs/1000").json()
    assert run["path"] == ".github/workflows/deploy.yml"
    assert (run["event"], run["status"], run["conclusion"]) == ("workflow_dispatch", "queued", None)
    assert (run["head_branch"], run["head_sha"], run["run_attempt"]) == ("main", sha(1), 1)
    assert gh.get(f"{R}/actions/runs/999").status_code == 404


@pytest.mark.parametrize("ref", [sha(1), "no-such-branch"])
def test_dispatch_to_a_sha_or_unknown_ref_is_422(
    gh: httpx.Client, repo: FakeRepo, ref: str
) -> None:
    repo.add_commit(sha(1), files=[])
    repo.add_workflow("deploy.yml", name="Deploy", workflow_id=55)
    response = gh.post(f"{R}/actions/workflows/deploy.yml/dispatches", json={"ref": ref})
    assert response.status_code == 422
    assert response.json()["message"] == f"No ref found for: {ref}"
    assert repo.dispatched_runs("deploy.yml") == []


def test_runs_are_listed_newest_first_and_filtered(gh: httpx.Client, repo: FakeRepo) -> None:
    repo.add_commit(sha(1), files=[])
    repo.add_commit(sha(2), files=[], branch="release")
    repo.add_workflow("deploy.yml", name="Deploy", workflow_id=55)
    for ref, value in [("main", sha(1)), ("release", sha(2)), ("main", sha(1))]:
        gh.post(
            f"{R}/actions/workflows/deploy.yml/dispatches",
            json={"ref": ref, "inputs": {"sha": value}},
        )
    payload = repo.complete_run(1000, "success")

    runs_url = f"{R}/actions/workflows/deploy.yml/runs"
    everything = gh.get(runs_url).json()
    assert everything["total_count"] == 3
    assert [r["id"] for r in everything["workflow_runs"]] == [1002, 1001, 1000]
    on_main = gh.get(runs_url, params={"branch": "main", "event": "workflow_dispatch"}).json()
    assert [r["id"] for r in on_main["workflow_runs"]] == [1002, 1000]
    done = gh.get(runs_url, params={"status": "completed"}).json()
    assert [r["id"] for r in done["workflow_runs"]] == [1000]
    assert gh.get(runs_url, params={"status": "success"}).json()["total_count"] == 1
    by_sha = gh.get(runs_url, params={"head_sha": sha(2)}).json()
    assert [r["id"] for r in by_sha["workflow_runs"]] == [1001]
    paged = gh.get(runs_url, params={"per_page": 1, "page": 2})
    assert [r["id"] for r in paged.json()["workflow_runs"]] == [1001]
    assert 'rel="next"' in paged.headers["link"]

    assert payload["action"] == "completed"
    assert payload["workflow_run"]["conclusion"] == "success"
    assert payload["workflow_run"]["status"] == "completed"
    assert payload["workflow_run"]["repository"]["full_name"] == f"{OWNER}/{NAME}"
    assert payload["workflow"]["path"] == ".github/workflows/deploy.yml"
    assert payload["installation"]["id"] == 7
    assert payload["repository"]["id"] == 9001


def test_a_person_runs_a_workflow_by_hand_and_the_api_runs_as_the_bot(
    gh: httpx.Client, repo: FakeRepo
) -> None:
    repo.add_commit(sha(1), files=[])
    repo.add_commit(sha(2), files=[])
    repo.add_workflow(
        "deploy.yml",
        name="Deploy",
        workflow_id=55,
        run_name_template="Deploy {sha} by hand",
        inputs={"sha": True, "reason": False},
    )
    dispatched = gh.post(
        f"{R}/actions/workflows/deploy.yml/dispatches",
        json={"ref": "main", "inputs": {"sha": sha(1)}, "return_run_details": True},
    ).json()["workflow_run_id"]
    manual = repo.start_manual_run(
        "deploy.yml", actor="mona", ref="refs/heads/main", inputs={"sha": sha(1)}
    )
    assert (dispatched, manual) == (1000, 1001)  # one id counter for both

    by_bot = gh.get(f"{R}/actions/runs/{dispatched}").json()
    assert (by_bot["actor"]["login"], by_bot["triggering_actor"]["login"]) == (BOT, BOT)
    assert by_bot["actor"]["type"] == "Bot"
    run = gh.get(f"{R}/actions/runs/{manual}").json()
    assert (run["event"], run["status"], run["run_attempt"]) == ("workflow_dispatch", "queued", 1)
    assert (run["actor"]["login"], run["triggering_actor"]["login"]) == ("mona", "mona")
    assert run["actor"]["type"] == "User"
    # the branch's tip, whatever the inputs say; the title from the run-name template
    assert (run["head_branch"], run["head_sha"]) == ("main", sha(2))
    assert run["display_title"] == f"Deploy {sha(1)} by hand"
    assert run["run_number"] == 2
    listed = repo.dispatched_runs("deploy.yml")
    assert [(r["id"], r["inputs"]) for r in listed] == [
        (1000, {"sha": sha(1)}),
        (1001, {"sha": sha(1)}),
    ]
    mine = gh.get(f"{R}/actions/workflows/deploy.yml/runs", params={"actor": "mona"}).json()
    assert [r["id"] for r in mine["workflow_runs"]] == [1001]

    # the "Run workflow" form refuses what the API refuses
    refusals = [
        ("main", {}, "Required input 'sha' not provided"),
        ("main", {"sha": sha(1), "force": "yes"}, 'Unexpected inputs provided: ["force"]'),
        ("nope", {"sha": sha(1)}, "No ref found for: nope"),
        (sha(2), {"sha": sha(1)}, f"No ref found for: {sha(2)}"),
    ]
    for ref, inputs, message in refusals:
        with pytest.raises(GitHubError, match=re.escape(message)) as refused:
            repo.start_manual_run("deploy.yml", actor="mona", ref=ref, inputs=inputs)
        assert refused.value.status == 422
    assert len(repo.dispatched_runs("deploy.yml")) == 2


def add_verify_run(repo: FakeRepo, *, event: str = "push", title: str = "Verify") -> int:
    """A run of verify.yml (workflow 56) started by `dev` on main at sha(1)."""
    return repo.add_run(
        "verify.yml",
        event=event,
        actor="dev",
        head_branch="main",
        head_sha=sha(1),
        display_title=title,
    )


def test_a_run_of_another_event_is_listed_but_not_as_a_dispatch(
    gh: httpx.Client, repo: FakeRepo
) -> None:
    repo.add_commit(sha(1), files=[])
    repo.add_workflow("verify.yml", name="Verify main", workflow_id=56)
    run_id = add_verify_run(repo, title="Fix the build")
    assert add_verify_run(repo, event="schedule") == run_id + 1

    run = gh.get(f"{R}/actions/runs/{run_id}").json()
    assert (run["event"], run["status"], run["conclusion"]) == ("push", "queued", None)
    assert (run["actor"]["login"], run["triggering_actor"]["login"]) == ("dev", "dev")
    assert (run["head_branch"], run["head_sha"]) == ("main", sha(1))
    assert (run["display_title"], run["run_number"]) == ("Fix the build", 1)
    assert run["head_commit"]["id"] == sha(1)
    pushes = gh.get(f"{R}/actions/workflows/56/runs", params={"event": "push"}).json()
    assert [r["id"] for r in pushes["workflow_runs"]] == [run_id]
    assert repo.dispatched_runs("verify.yml") == []
    completed = repo.complete_run(run_id, "success")
    assert completed["workflow_run"]["event"] == "push"
    assert completed["sender"]["login"] == "dev"


def test_a_rerun_is_the_next_attempt_of_the_same_run(
    fake: FakeGitHub, gh: httpx.Client, repo: FakeRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.add_commit(sha(1), files=[])
    repo.add_workflow("deploy.yml", name="Deploy", workflow_id=55)
    gh.post(f"{R}/actions/workflows/deploy.yml/dispatches", json={"ref": "main"})
    first = repo.complete_run(1000, "failure")
    assert (first["workflow_run"]["run_attempt"], first["sender"]["login"]) == (1, BOT)
    assert first["workflow_run"]["previous_attempt_url"] is None
    started_first = first["workflow_run"]["run_started_at"]

    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 2)  # timestamps have whole seconds
    assert repo.rerun(1000, actor="mona") == 2
    run = gh.get(f"{R}/actions/runs/1000").json()
    assert (run["id"], run["run_attempt"], run["run_number"]) == (1000, 2, 1)
    assert (run["status"], run["conclusion"]) == ("queued", None)
    assert (run["actor"]["login"], run["triggering_actor"]["login"]) == (BOT, "mona")
    assert run["previous_attempt_url"] == f"{fake.url}{R}/actions/runs/1000/attempts/1"
    assert run["run_started_at"] > started_first
    assert run["created_at"] == first["workflow_run"]["created_at"]
    runs = gh.get(f"{R}/actions/workflows/deploy.yml/runs").json()
    assert [(r["id"], r["run_attempt"]) for r in runs["workflow_runs"]] == [(1000, 2)]

    with pytest.raises(ValueError, match="only a completed run re-runs"):
        repo.rerun(1000)
    started = repo.start_run(1000)
    assert started["workflow_run"]["run_attempt"] == 2
    assert started["workflow_run"]["status"] == "in_progress"
    assert started["sender"]["login"] == "mona"  # who re-ran it
    done = repo.complete_run(1000, "success")
    assert (done["workflow_run"]["run_attempt"], done["workflow_run"]["conclusion"]) == (
        2,
        "success",
    )

    assert repo.rerun(1000) == 3  # without an actor the triggering actor stays
    third = gh.get(f"{R}/actions/runs/1000").json()
    assert (third["run_attempt"], third["triggering_actor"]["login"]) == (3, "mona")
    assert third["actor"]["login"] == BOT
    assert repo.dispatched_runs("deploy.yml")[0]["run_attempt"] == 3


# ---------------------------------------------------------- deployment protection rules


def test_protection_request_payload_follows_githubs_webhook_schema(
    fake: FakeGitHub, gh: httpx.Client, repo: FakeRepo
) -> None:
    repo.add_commit(sha(1), files=[])
    repo.add_commit(sha(2), files=[])
    repo.add_workflow("deploy.yml", name="Deploy", workflow_id=55)
    repo.add_workflow("verify.yml", name="Verify", workflow_id=56)
    run_id = repo.start_manual_run("deploy.yml", actor="mona", ref="main", inputs={"sha": sha(1)})

    payload = repo.protection_request_payload(run_id)
    assert validate_webhook("deployment_protection_rule", payload) == []
    assert (payload["action"], payload["environment"], payload["event"]) == (
        "requested",
        "production",
        "workflow_dispatch",
    )
    callback = payload["deployment_callback_url"]
    assert callback == f"{fake.url}{R}/actions/runs/{run_id}/deployment_protection_rule"
    deployment = payload["deployment"]
    assert (deployment["sha"], deployment["ref"]) == (sha(2), "main")  # the tip, not the input
    assert (deployment["environment"], deployment["payload"]) == ("production", {})
    assert deployment["creator"]["login"] == payload["sender"]["login"] == "mona"
    assert deployment["url"] == f"{fake.url}{R}/deployments/{deployment['id']}"
    assert payload["pull_requests"] == []
    assert payload["repository"]["full_name"] == f"{OWNER}/{NAME}"
    assert payload["organization"]["login"] == OWNER
    assert payload["installation"]["id"] == 7

    staging = repo.protection_request_payload(add_verify_run(repo), environment="staging")
    assert validate_webhook("deployment_protection_rule", staging) == []
    assert (staging["event"], staging["environment"]) == ("push", "staging")
    assert staging["deployment"]["environment"] == "staging"
    assert (staging["deployment"]["sha"], staging["deployment"]["creator"]["login"]) == (
        sha(1),
        "dev",
    )
    assert staging["deployment"]["id"] != deployment["id"]

    repo.complete_run(run_id, "failure")
    repo.rerun(run_id, actor="hubot")
    again = repo.protection_request_payload(run_id)
    assert again["deployment"]["creator"]["login"] == again["sender"]["login"] == "hubot"

    # the callback URL is the review endpoint
    review = gh.post(
        callback.removeprefix(fake.url),
        json={"environment_name": "production", "state": "approved"},
    )
    assert review.status_code == 204


def test_validate_webhook_reports_what_github_would_not_send(repo: FakeRepo) -> None:
    repo.add_commit(sha(1), files=[])
    repo.add_workflow("deploy.yml", name="Deploy", workflow_id=55)
    run_id = repo.start_manual_run("deploy.yml", actor="mona", ref="main", inputs={})
    payload = repo.protection_request_payload(run_id)

    approved = validate_webhook("deployment_protection_rule", {**payload, "action": "approved"})
    assert approved == ["$.action: 'approved' is not one of ['requested']"]

    broken = json.loads(json.dumps(payload))
    del broken["deployment"]["sha"]
    broken["deployment_callback_url"] = 5
    del broken["sender"]
    assert validate_webhook("deployment_protection_rule", broken) == [
        "$: 'sender' is a required property",
        "$.deployment: 'sha' is a required property",
        "$.deployment_callback_url: 5 is not of type 'string'",
    ]
    with pytest.raises(ValueError, match="no webhook schema"):
        validate_webhook("deployment_review", payload)


def test_a_gate_is_reviewed_once_per_run_attempt_and_environment(
    gh: httpx.Client, repo: FakeRepo
) -> None:
    repo.add_commit(sha(1), files=[])
    repo.add_workflow("deploy.yml", name="Deploy", workflow_id=55)
    run_id = repo.start_manual_run("deploy.yml", actor="mona", ref="main", inputs={})
    gate = f"{R}/actions/runs/{run_id}/deployment_protection_rule"
    assert repo.gate_review(run_id) is None

    note = gh.post(gate, json={"environment_name": "production", "comment": "Checking"})
    assert note.status_code == 204  # a comment-only review leaves the gate pending
    approve = {"environment_name": "production", "state": "approved", "comment": "Low risk"}
    first = gh.post(gate, json=approve)
    assert first.status_code == 204 and first.content == b""
    assert repo.gate_review(run_id) == {
        "run_id": run_id,
        "run_attempt": 1,
        "environment_name": "production",
        "state": "approved",
        "comment": "Low risk",
    }

    twice = gh.post(gate, json={"environment_name": "production", "state": "rejected"})
    assert twice.status_code == 422
    assert twice.json()["message"] == (
        "The deployment protection rule for environment 'production' has already been "
        "reviewed for this workflow run attempt."
    )
    assert twice.json()["documentation_url"].startswith("https://docs.github.com/")
    late_note = gh.post(gate, json={"environment_name": "production", "comment": "x"})
    assert late_note.status_code == 422
    other_environment = gh.post(gate, json={"environment_name": "staging", "state": "rejected"})
    assert other_environment.status_code == 204
    unknown = gh.post(
        f"{R}/actions/runs/999/deployment_protection_rule",
        json={"environment_name": "production", "state": "approved"},
    )
    assert unknown.status_code == 404 and unknown.json()["message"] == "Not Found"

    repo.complete_run(run_id, "failure")
    assert repo.rerun(run_id, actor="mona") == 2
    assert repo.gate_review(run_id) is None  # the new attempt is not reviewed yet
    assert repo.gate_review(run_id, attempt=1) == {
        "run_id": run_id,
        "run_attempt": 1,
        "environment_name": "staging",
        "state": "rejected",
        "comment": None,
    }
    rejected = gh.post(gate, json={"environment_name": "production", "state": "rejected"})
    assert rejected.status_code == 204
    latest = repo.gate_review(run_id)
    assert latest is not None and latest["state"] == "rejected"
    assert [
        (r["run_attempt"], r["environment_name"], r["state"], r["comment"])
        for r in repo.gate_reviews()
    ] == [
        (1, "production", None, "Checking"),
        (1, "production", "approved", "Low risk"),
        (1, "staging", "rejected", None),
        (2, "production", "rejected", None),
    ]


# ------------------------------------------------------------------------- statuses


def test_statuses_are_created_and_validated(gh: httpx.Client, repo: FakeRepo) -> None:
    repo.add_commit(sha(1), files=[])
    created = gh.post(
        f"{R}/statuses/{sha(1)}",
        json={"state": "pending", "context": "release-governor", "description": "Checking"},
    )
    assert created.status_code == 201
    assert created.json()["state"] == "pending"
    assert created.json()["context"] == "release-governor"
    gh.post(f"{R}/statuses/{sha(1)}", json={"state": "success", "context": "release-governor"})

    too_long = gh.post(
        f"{R}/statuses/{sha(1)}", json={"state": "failure", "description": "x" * 141}
    )
    assert too_long.status_code == 422
    assert too_long.json()["message"] == "Validation Failed"
    assert too_long.json()["errors"][0]["field"] == "description"
    unknown = gh.post(f"{R}/statuses/{sha(9)}", json={"state": "success"})
    assert unknown.status_code == 422
    assert unknown.json()["message"] == f"No commit found for SHA: {sha(9)}"

    assert [s["state"] for s in repo.statuses(sha(1))] == ["pending", "success"]
    listed = gh.get(f"{R}/commits/{sha(1)}/statuses").json()
    assert [s["state"] for s in listed] == ["success", "pending"]  # newest first
    combined = gh.get(f"{R}/commits/main/status").json()
    assert (combined["state"], combined["total_count"], combined["sha"]) == ("success", 1, sha(1))


# ----------------------------------------------------------------- pulls and issues


def test_issues_paginate_with_link_headers(gh: httpx.Client, repo: FakeRepo) -> None:
    for n in range(5):
        created = gh.post(
            f"{R}/issues", json={"title": f"Incident {n}", "body": "b", "labels": ["degraded"]}
        )
        assert created.status_code == 201 and created.json()["number"] == n + 1
    pages: list[list[int]] = []
    url: str | None = f"{R}/issues?labels=degraded&state=open&per_page=2"
    while url is not None:
        response = gh.get(url)
        pages.append([issue["number"] for issue in response.json()])
        url = dict(iter_link_header(response.headers.get("link", ""))).get("next")
    assert pages == [[5, 4], [3, 2], [1]]


def test_issue_lists_filter_by_all_labels_and_include_pull_requests(
    gh: httpx.Client, repo: FakeRepo
) -> None:
    repo.open_issue("Production degraded", ["degraded", "prod"])
    repo.open_issue("Staging degraded", ["degraded"])
    repo.add_pull(
        3, user="dev", head_sha=sha(7), merge_commit_sha=None, labels=["degraded", "prod"]
    )
    repo.close_issue(1)

    both = gh.get(f"{R}/issues", params={"labels": "degraded,prod", "state": "all"}).json()
    assert [i["number"] for i in both] == [3, 1]
    assert "pull_request" in both[0] and "pull_request" not in both[1]
    open_only = gh.get(f"{R}/issues", params={"labels": "degraded"}).json()
    assert [i["number"] for i in open_only] == [3, 2]
    assert [i["title"] for i in repo.issues()] == ["Production degraded", "Staging degraded"]

    comment = gh.post(f"{R}/issues/2/comments", json={"body": "Deploys are paused."})
    assert comment.status_code == 201
    assert [c["body"] for c in gh.get(f"{R}/issues/2/comments").json()] == ["Deploys are paused."]
    assert [c["body"] for c in repo.comments(2)] == ["Deploys are paused."]
    labels = gh.get(f"{R}/issues/1/labels").json()
    assert [label["name"] for label in labels] == ["degraded", "prod"]
    assert gh.post(f"{R}/issues/99/comments", json={"body": "x"}).status_code == 404


def test_pulls_for_a_commit_and_webhook_payloads(gh: httpx.Client, repo: FakeRepo) -> None:
    repo.add_commit(sha(1), files=[])
    repo.add_commit(sha(2), files=[{"filename": "a.py", "status": "modified"}])
    repo.add_pull(12, user="dev", head_sha=sha(8), merge_commit_sha=sha(2), labels=["hotfix"])

    pulls = gh.get(f"{R}/commits/{sha(2)}/pulls").json()
    assert [(p["number"], p["user"]["login"], p["merge_commit_sha"]) for p in pulls] == [
        (12, "dev", sha(2))
    ]
    assert pulls[0]["labels"][0]["name"] == "hotfix"
    assert pulls[0]["head"]["sha"] == sha(8)
    assert gh.get(f"{R}/commits/{sha(8)}/pulls").json()[0]["number"] == 12
    assert gh.get(f"{R}/commits/{sha(1)}/pulls").json() == []
    pull = gh.get(f"{R}/pulls/12").json()
    assert (pull["state"], pull["merged"]) == ("closed", True)
    assert gh.get(f"{R}/pulls/13").status_code == 404

    labeled = repo.label_added_payload(12, "deploy-now", "maintainer")
    assert labeled["action"] == "labeled" and labeled["label"]["name"] == "deploy-now"
    assert labeled["pull_request"]["number"] == 12
    assert labeled["installation"]["id"] == 7 and labeled["sender"]["login"] == "maintainer"
    assert {lb["name"] for lb in gh.get(f"{R}/pulls/12").json()["labels"]} == {
        "hotfix",
        "deploy-now",
    }

    commented = repo.comment_payload(12, "/deploy", "maintainer")
    assert commented["action"] == "created"
    assert commented["issue"]["number"] == 12 and "pull_request" in commented["issue"]
    assert commented["comment"]["body"] == "/deploy"
    assert gh.get(f"{R}/issues/12/comments").json()[0]["body"] == "/deploy"


@pytest.mark.parametrize(
    ("role", "legacy"),
    [
        ("admin", "admin"),
        ("maintain", "write"),
        ("write", "write"),
        ("triage", "read"),
        ("read", "read"),
        ("none", "none"),
    ],
)
def test_permission_maps_roles_to_legacy_permissions(
    gh: httpx.Client, repo: FakeRepo, role: str, legacy: str
) -> None:
    repo.set_permission("Mona", role)
    body = gh.get(f"{R}/collaborators/mona/permission").json()
    assert (body["permission"], body["role_name"], body["user"]["login"]) == (legacy, role, "Mona")
    unknown = gh.get(f"{R}/collaborators/ghost/permission")
    assert unknown.status_code == 404 and unknown.json()["message"] == "ghost is not a user"


# ------------------------------------------------------------------- injected faults


def test_fail_next_answers_without_side_effects(
    fake: FakeGitHub, gh: httpx.Client, repo: FakeRepo
) -> None:
    repo.add_commit(sha(1), files=[])
    repo.add_workflow("deploy.yml", name="Deploy", workflow_id=55)
    fake.fail_next("actions/create-workflow-dispatch", 502, times=2, headers={"x-extra": "1"})
    dispatch = f"{R}/actions/workflows/deploy.yml/dispatches"
    for _ in range(2):
        failed = gh.post(dispatch, json={"ref": "main"})
        assert failed.status_code == 502 and failed.headers["x-extra"] == "1"
    assert repo.dispatched_runs("deploy.yml") == []
    assert gh.post(dispatch, json={"ref": "main"}).status_code == 204
    assert len(repo.dispatched_runs("deploy.yml")) == 1
    assert [c.status for c in fake.calls_to("actions/create-workflow-dispatch")] == [502, 502, 204]

    fake.fail_next("issues/create", 500, body={"message": "Server Error"})
    assert gh.post(f"{R}/issues", json={"title": "t"}).json() == {"message": "Server Error"}
    assert repo.issues() == []


def test_slow_next_does_the_side_effect_then_answers_late(
    fake: FakeGitHub, gh: httpx.Client, repo: FakeRepo
) -> None:
    repo.add_commit(sha(1), files=[])
    fake.slow_next("repos/create-commit-status", 5.0)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        gh.post(f"{R}/statuses/{sha(1)}", json={"state": "success"}, timeout=0.1)
    # The client gave up long before the answer (5 s); the bound leaves load plenty of room.
    assert time.monotonic() - started < 4.0
    assert [s["state"] for s in repo.statuses(sha(1))] == ["success"]  # it happened anyway
    assert fake.calls_to("repos/create-commit-status")[0].status == 201
    assert gh.post(f"{R}/statuses/{sha(1)}", json={"state": "success"}).status_code == 201


def test_latency_delays_every_answer_without_holding_up_the_others(
    fake: FakeGitHub, gh: httpx.Client, repo: FakeRepo
) -> None:
    try:
        fake.latency_s = 0.3
        started = time.monotonic()
        assert gh.get(R).status_code == 200
        assert time.monotonic() - started >= 0.3

        # Served one after the other, three answers would take 6 s; together, 2 s. The
        # bound sits between, 3 s clear of the concurrent case, so load cannot fail it.
        fake.latency_s = 2.0
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=3) as pool:
            answers = list(pool.map(lambda _i: gh.get(R), range(3)))
        elapsed = time.monotonic() - started
    finally:
        fake.latency_s = 0.0
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert elapsed >= 2.0
    assert elapsed < 5.0, "the requests waited one after the other, not together"


def test_rate_limit_next_answers_429_with_retry_after(
    fake: FakeGitHub, gh: httpx.Client, repo: FakeRepo
) -> None:
    fake.rate_limit_next("issues/create", retry_after_s=3)
    limited = gh.post(f"{R}/issues", json={"title": "t"})
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "3"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert "secondary rate limit" in limited.json()["message"]
    assert repo.issues() == []
    assert gh.post(f"{R}/issues", json={"title": "t"}).status_code == 201


# ------------------------------------------------------------------------- contract


def test_requests_outside_the_contract_are_recorded(fake: FakeGitHub, gh: httpx.Client) -> None:
    response = gh.delete(R)
    assert response.status_code == 404 and response.json()["message"] == "Not Found"
    assert fake.violations == [f"no operation for DELETE {R}"]
    assert fake.calls[-1].operation_id is None and fake.calls[-1].status == 404
    fake.violations.clear()


def test_requests_that_break_the_contract_answer_400(
    fake: FakeGitHub, gh: httpx.Client, repo: FakeRepo
) -> None:
    repo.add_workflow("deploy.yml", name="Deploy", workflow_id=55)
    bad_body = gh.post(f"{R}/actions/workflows/deploy.yml/dispatches", json={"ref": 5})
    assert bad_body.status_code == 400
    assert bad_body.json()["message"].startswith("contract violation: ")
    assert "is not of type 'string'" in bad_body.json()["message"]
    assert gh.get(f"{R}/issues", params={"labelz": "x"}).status_code == 400
    assert gh.get(f"{R}/issues", params={"state": "opened"}).status_code == 400
    assert gh.post(f"{R}/statuses/{sha(1)}", json={"state": "ok"}).status_code == 400
    assert gh.get(R, params={"ref": "main"}).status_code == 400
    assert len(fake.violations) == 5
    assert repo.dispatched_runs("deploy.yml") == []
    fake.violations.clear()


def test_missing_github_headers_are_recorded_not_refused(
    fake: FakeGitHub, gh: httpx.Client, repo: FakeRepo
) -> None:
    response = gh.get(R, headers={"Accept": "*/*", "X-GitHub-Api-Version": ""})
    assert response.status_code == 200
    del gh.headers["X-GitHub-Api-Version"]
    assert gh.get(R).status_code == 200
    assert any(v.startswith("missing Accept: application/vnd.github+json") for v in fake.violations)
    assert any(v.startswith("missing X-GitHub-Api-Version") for v in fake.violations)
    assert fake.calls[-1].headers.get("x-github-api-version") is None
    fake.violations.clear()


def test_contract_prefers_literal_segments_and_lets_path_and_basehead_span_slashes(
    contract: OpenApiContract,
) -> None:
    statuses = contract.match("GET", "/repos/o/r/commits/main/statuses")
    assert statuses.operation_id == "repos/list-commit-statuses-for-ref"
    assert statuses.template == "/repos/{owner}/{repo}/commits/{ref}/statuses"
    assert contract.match("GET", "/repos/o/r/commits/main").operation_id == "repos/get-commit"
    content = contract.match("GET", "/repos/o/r/contents/.github/release%20policy.yml")
    assert content.path_params["path"] == ".github/release policy.yml"
    compare = contract.match("GET", "/repos/o/r/compare/main...feature/x")
    assert compare.path_params["basehead"] == "main...feature/x"
    with pytest.raises(ContractViolation, match="no operation for GET /x"):
        contract.match("GET", "/x")
    with pytest.raises(ContractViolation):
        contract.match("GET", "/repos/o/r/branches/a/b")  # one segment per parameter


def test_contract_accepts_openapi_nullable_and_checks_bodies(contract: OpenApiContract) -> None:
    assert nullable_to_jsonschema({"type": "string", "nullable": True}) == {
        "anyOf": [{"type": "string"}, {"type": "null"}]
    }
    status = "/repos/o/r/statuses/abc"
    ok = contract.validate(
        "POST", status, {}, b'{"state": "success", "description": null}', "application/json"
    )
    assert ok.operation_id == "repos/create-commit-status"
    with pytest.raises(ContractViolation, match="required"):
        contract.validate("POST", status, {}, b"", None)
    with pytest.raises(ContractViolation, match="application/json"):
        contract.validate("POST", status, {}, b'{"state": "success"}', "text/plain")
    with pytest.raises(ContractViolation, match="no request body"):
        contract.validate("GET", "/repos/o/r", {}, b"{}", "application/json")
    optional = contract.validate("POST", "/app/installations/1/access_tokens", {}, None, None)
    assert optional.path_params == {"installation_id": "1"}


# -------------------------------------------------------------------- app endpoints


def test_app_installations_and_webhook_deliveries(
    fake: FakeGitHub, http: httpx.Client, repo: FakeRepo, key_pair: tuple[str, str]
) -> None:
    http.headers["Authorization"] = f"Bearer {app_jwt(key_pair[0])}"
    installations = http.get("/app/installations").json()
    assert [(i["id"], i["account"]["login"]) for i in installations] == [(7, OWNER)]
    assert installations[0]["app_slug"] == fake.app_slug == "release-governor"

    now = time.time()
    for n in range(1, 6):
        fake.add_delivery(
            n, f"guid-{n}", "workflow_run", 200 if n % 2 else 500, delivered_at=now - 100 + n
        )
    seen: list[int] = []
    url: str | None = "/app/hook/deliveries?per_page=2"
    while url is not None:
        response = http.get(url)
        seen.extend(d["id"] for d in response.json())
        url = dict(iter_link_header(response.headers.get("link", ""))).get("next")
        assert url is None or "cursor=" in url
    assert seen == [5, 4, 3, 2, 1]
    failures = http.get("/app/hook/deliveries", params={"status": "failure"}).json()
    assert [d["id"] for d in failures] == [4, 2]

    one = http.get("/app/hook/deliveries/4").json()
    assert (one["guid"], one["status_code"], one["event"]) == ("guid-4", 500, "workflow_run")
    assert http.post("/app/hook/deliveries/4/attempts").status_code == 202
    assert fake.redeliveries == [4]
    assert http.post("/app/hook/deliveries/40/attempts").status_code == 404


# ------------------------------------------------- conditional requests and rate limits


def test_a_conditional_get_answers_304_which_does_not_count(
    fake: FakeGitHub, gh: httpx.Client, repo: FakeRepo
) -> None:
    first = gh.get(R)
    etag = first.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{64}"', etag)  # strong, quoted
    assert gh.get(R).headers["etag"] == etag  # the same body, the same tag
    counted = fake.counted_requests(7)

    unchanged = gh.get(R, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    # weak comparison and lists of tags, as HTTP defines If-None-Match
    assert gh.get(R, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert (fake.counted_requests(7), fake.uncounted_requests(7)) == (counted, 2)
    assert int(unchanged.headers["x-ratelimit-used"]) == counted
    assert int(unchanged.headers["x-ratelimit-remaining"]) == 5000 - counted

    assert gh.get(R, headers={"If-None-Match": '"stale"'}).status_code == 200
    repo.open_issue("Production is degraded")  # open_issues_count changes
    changed = gh.get(R, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.json()["open_issues_count"] == 1
    assert changed.headers["etag"] != etag
    assert fake.counted_requests(7) == counted + 2
    assert [c.counted for c in fake.calls_to("repos/get")][-4:] == [False, False, True, True]


def test_each_page_of_a_list_has_its_own_etag(
    fake: FakeGitHub, gh: httpx.Client, repo: FakeRepo
) -> None:
    for n in range(5):
        repo.open_issue(f"Issue {n}")
    page1 = gh.get(f"{R}/issues", params={"per_page": 3})
    page2 = gh.get(f"{R}/issues", params={"per_page": 3, "page": 2})
    assert page1.headers["etag"] != page2.headers["etag"]
    again = gh.get(
        f"{R}/issues",
        params={"per_page": 3, "page": 2},
        headers={"If-None-Match": page2.headers["etag"]},
    )
    assert again.status_code == 304
    assert 'rel="prev"' in again.headers["link"]  # the answer's other headers stay
    wrong_page = gh.get(
        f"{R}/issues", params={"per_page": 3}, headers={"If-None-Match": page2.headers["etag"]}
    )
    assert wrong_page.status_code == 200
    # writes and errors carry no ETag
    assert "etag" not in gh.post(f"{R}/issues", json={"title": "New"}).headers
    assert "etag" not in gh.get(f"{R}/pulls/404").headers
    assert fake.uncounted_requests() == 1


def test_app_jwt_requests_count_against_the_apps_own_limit(
    fake: FakeGitHub, http: httpx.Client, repo: FakeRepo, key_pair: tuple[str, str]
) -> None:
    jwt_header = {"Authorization": f"Bearer {app_jwt(key_pair[0])}"}
    listed = http.get("/app/installations", headers=jwt_header)
    token = installation_token(http, key_pair[0])
    assert (fake.counted_requests(app=True), fake.counted_requests(7)) == (2, 0)
    assert listed.headers["x-ratelimit-used"] == "1"

    as_installation = http.get(R, headers={"Authorization": f"token {token}"})
    assert as_installation.headers["x-ratelimit-used"] == "1"  # its own bucket
    again = http.get("/app/installations", headers=jwt_header)
    assert again.headers["x-ratelimit-used"] == "3"
    unchanged = http.get(
        "/app/installations", headers={**jwt_header, "If-None-Match": again.headers["etag"]}
    )
    assert unchanged.status_code == 304
    assert (fake.counted_requests(app=True), fake.uncounted_requests(app=True)) == (3, 1)
    assert (fake.counted_requests(7), fake.counted_requests()) == (1, 4)
    assert {c.bucket for c in fake.calls} == {"app", "installation:7"}

    fake.reset_request_counts()
    assert (fake.counted_requests(), fake.uncounted_requests()) == (0, 0)
    fresh = http.get(R, headers={"Authorization": f"token {token}"})
    assert (fresh.headers["x-ratelimit-used"], fresh.headers["x-ratelimit-remaining"]) == (
        "1",
        "4999",
    )


def test_past_the_primary_limit_github_answers_403_with_nothing_remaining(
    fake: FakeGitHub, gh: httpx.Client, repo: FakeRepo
) -> None:
    fake.reset_request_counts()
    fake.set_rate_limit(3, installation_id=7)
    first = gh.get(R)
    assert first.headers["x-ratelimit-limit"] == "3"
    assert [gh.get(R).status_code for _ in range(2)] == [200, 200]
    refused = gh.get(R)
    assert refused.status_code == 403
    assert refused.json()["message"] == "API rate limit exceeded for installation ID 7."
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) > time.time()
    assert fake.counted_requests(7) == 3  # a refusal does not use the limit up further
    fake.set_rate_limit(None, installation_id=7)
    assert gh.get(R).status_code == 200


def test_an_installations_limit_scales_with_its_repositories(fake: FakeGitHub) -> None:
    fake.add_repos(20, installation_id=3)
    assert fake.rate_limit_for(3) == 5000
    fake.add_repos(80, installation_id=3, first_repo_id=200)
    assert fake.rate_limit_for(3) == 5000 + 50 * 80
    fake.add_repos(1000, installation_id=4, first_repo_id=1000)
    assert fake.rate_limit_for(4) == 12_500  # the ceiling
    assert fake.rate_limit_for(app=True) == 5000


def test_secondary_limit_points_and_concurrency_are_measured(
    fake: FakeGitHub, gh: httpx.Client, repo: FakeRepo
) -> None:
    fake.reset_request_counts()
    fake.calls.clear()
    gh.get(R)
    gh.get(f"{R}/issues")
    gh.post(f"{R}/issues", json={"title": "x"})
    assert fake.secondary_points_peak(installation_id=7) == 1 + 1 + 5
    assert fake.secondary_points_peak(app=True) == 0
    fake.latency_s = 0.2
    with ThreadPoolExecutor(4) as pool:
        assert all(r.status_code == 200 for r in pool.map(lambda _: gh.get(R), range(4)))
    assert fake.peak_concurrency == 4


# ------------------------------------------------------------ deliveries by the fake


SECRET = "s3cret-of-sixteen-chars"


def _payload(event_action: str = "completed") -> dict[str, Any]:
    return {
        "action": event_action,
        "installation": {"id": 7},
        "repository": {"id": 9001, "full_name": f"{OWNER}/{NAME}"},
        "workflow_run": {"id": 1000, "head_sha": sha(1)},
    }


@pytest.fixture
def receiver(fake: FakeGitHub) -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hook:
        fake.webhook_url = hook.url
        fake.webhook_secret = SECRET
        yield hook
        fake.wait_for_redeliveries(10)


@pytest.fixture
def app_http(http: httpx.Client, key_pair: tuple[str, str]) -> httpx.Client:
    http.headers["Authorization"] = f"Bearer {app_jwt(key_pair[0])}"
    return http


def test_a_delivery_is_signed_sent_and_recorded_like_hookshot(
    fake: FakeGitHub, receiver: WebhookReceiver, app_http: httpx.Client
) -> None:
    receiver.reply(Reply(202, {"result": "evaluated", "sha": sha(1)}))
    delivered = fake.deliver(
        "workflow_run", _payload(), guid="f00dfeed-0000-11ef-8000-000000000001"
    )
    assert (delivered.status_code, delivered.status, delivered.ok) == (202, "OK", True)
    assert delivered.body == {"result": "evaluated", "sha": sha(1)}
    assert not delivered.redelivery

    [sent] = receiver.received
    assert sent.json() == _payload()
    assert sent.header("X-Hub-Signature-256") == signature_for(SECRET.encode(), sent.body)
    assert (sent.header("X-Hub-Signature") or "").startswith("sha1=")
    assert sent.header("X-GitHub-Event") == "workflow_run"
    assert sent.header("X-GitHub-Delivery") == delivered.guid
    assert sent.header("X-GitHub-Hook-ID") == str(fake.hook_id)
    assert sent.header("X-GitHub-Hook-Installation-Target-Type") == "integration"
    assert sent.header("X-GitHub-Hook-Installation-Target-ID") == APP_ID
    assert (sent.header("User-Agent") or "").startswith("GitHub-Hookshot/")
    assert sent.header("Content-Type") == "application/json"

    [listed] = app_http.get("/app/hook/deliveries").json()
    assert listed["id"] == delivered.delivery_id
    assert (listed["guid"], listed["status"], listed["status_code"]) == (delivered.guid, "OK", 202)
    assert (listed["event"], listed["action"], listed["redelivery"]) == (
        "workflow_run",
        "completed",
        False,
    )
    assert (listed["installation_id"], listed["repository_id"]) == (7, 9001)
    assert abs(datetime.fromisoformat(listed["delivered_at"]).timestamp() - time.time()) < 5
    one = app_http.get(f"/app/hook/deliveries/{delivered.delivery_id}").json()
    assert one["url"] == receiver.url
    assert one["request"]["payload"] == _payload()
    assert one["request"]["headers"]["X-GitHub-Delivery"] == delivered.guid
    assert json.loads(one["response"]["payload"]) == delivered.body


def test_failed_timed_out_and_dropped_deliveries_are_recorded_as_failures(
    fake: FakeGitHub, receiver: WebhookReceiver, app_http: httpx.Client
) -> None:
    receiver.reply(Reply(503, {"result": "busy"}))
    busy = fake.deliver("workflow_run", _payload())
    assert (busy.status_code, busy.status, busy.body) == (
        503,
        "Invalid HTTP Response: 503",
        {"result": "busy"},
    )

    dropped = fake.deliver("workflow_run", _payload(), drop=True)
    assert (dropped.status_code, dropped.status, dropped.body) == (
        0,
        "failed to connect to host",
        None,
    )
    assert len(receiver.received) == 1  # never sent

    fake.delivery_timeout_s = 0.3
    late = threading.Event()
    receiver.reply(Reply(200, wait_for=late))
    began = time.monotonic()
    timed_out = fake.deliver("workflow_run", _payload())
    assert time.monotonic() - began < 5
    late.set()
    assert (timed_out.status_code, timed_out.status, timed_out.ok) == (0, "timed out", False)
    assert timed_out.duration_s >= 0.3
    assert len(receiver.received) == 2  # it was sent; the answer came too late

    with WebhookReceiver() as gone:
        closed_url = gone.url
    refused = fake.deliver("workflow_run", _payload(), url=closed_url)
    assert (refused.status_code, refused.status) == (0, "failed to connect to network")

    ok = fake.deliver("workflow_run", _payload())
    listed = app_http.get("/app/hook/deliveries").json()
    assert [d["id"] for d in listed] == [
        d.delivery_id for d in (ok, refused, timed_out, dropped, busy)
    ]
    assert [d["status"] for d in listed] == [
        "OK",
        "failed to connect to network",
        "timed out",
        "failed to connect to host",
        "Invalid HTTP Response: 503",
    ]
    # the documented filter: success is 200-399, failure 400-599 (no answer is neither)
    failures = app_http.get("/app/hook/deliveries", params={"status": "failure"}).json()
    assert [d["id"] for d in failures] == [busy.delivery_id]
    successes = app_http.get("/app/hook/deliveries", params={"status": "success"}).json()
    assert [d["id"] for d in successes] == [ok.delivery_id]


def test_a_redelivery_resends_the_same_request_in_the_background(
    fake: FakeGitHub, receiver: WebhookReceiver, app_http: httpx.Client
) -> None:
    receiver.reply(Reply(500, {"result": "error"}))
    failed = fake.deliver("workflow_run", _payload())
    assert failed.status_code == 500

    release = threading.Event()
    receiver.reply(Reply(200, {"result": "evaluated"}, wait_for=release))
    accepted = app_http.post(f"/app/hook/deliveries/{failed.delivery_id}/attempts")
    assert accepted.status_code == 202
    original, again = receiver.wait_for_requests(2)
    # accepted while the webhook has not answered yet: the redelivery is asynchronous
    assert len(fake.deliveries()) == 1
    release.set()
    fake.wait_for_redeliveries(10)

    assert again.body == original.body
    for name in ("X-GitHub-Delivery", "X-GitHub-Event", "X-Hub-Signature-256", "X-GitHub-Hook-ID"):
        assert again.header(name) == original.header(name)
    assert fake.redeliveries == [failed.delivery_id]
    newest, first = app_http.get("/app/hook/deliveries").json()
    assert first["id"] == failed.delivery_id
    assert (first["redelivery"], first["status_code"]) == (False, 500)
    assert newest["id"] != failed.delivery_id
    assert (newest["guid"], newest["redelivery"], newest["status"]) == (failed.guid, True, "OK")
    assert [d["redelivery"] for d in fake.deliveries(guid=failed.guid)] == [True, False]

    # GitHub redelivers to the App's webhook URL as it is now, signed with today's secret
    with WebhookReceiver() as moved:
        fake.webhook_url = moved.url
        fake.webhook_secret = "rotated-secret-sixteen"
        assert app_http.post(f"/app/hook/deliveries/{newest['id']}/attempts").status_code == 202
        fake.wait_for_redeliveries(10)
        [third] = moved.received
    assert third.body == original.body
    assert third.header("X-GitHub-Delivery") == failed.guid
    assert third.header("X-Hub-Signature-256") == signature_for(
        b"rotated-secret-sixteen", third.body
    )
    assert len(fake.deliveries(guid=failed.guid)) == 3


def test_only_deliveries_of_the_past_three_days_are_redelivered(
    fake: FakeGitHub, receiver: WebhookReceiver, app_http: httpx.Client
) -> None:
    now = time.time()
    three_days = 3 * 24 * 3600
    fake.add_delivery(1, "old", "workflow_run", 500, delivered_at=now - three_days - 60)
    fake.add_delivery(2, "recent", "workflow_run", 500, delivered_at=now - three_days + 60)
    old = app_http.post("/app/hook/deliveries/1/attempts")
    assert old.status_code == 422
    assert old.json()["message"] == "Validation Failed"
    assert app_http.post("/app/hook/deliveries/2/attempts").status_code == 202
    assert fake.redeliveries == [2]

    sent = fake.deliver("workflow_run", _payload())
    fake.clock = lambda: now + three_days + 1  # the same delivery, seen three days later
    assert app_http.post(f"/app/hook/deliveries/{sent.delivery_id}/attempts").status_code == 422
    assert fake.redeliveries == [2]
    assert len(receiver.received) == 1


def test_deliveries_page_back_in_time_with_cursors(
    fake: FakeGitHub, app_http: httpx.Client
) -> None:
    now = time.time()
    for n in range(1, 251):
        fake.add_delivery(
            n, f"guid-{n}", "workflow_run", 500 if n % 10 == 0 else 200, delivered_at=now - 1000 + n
        )
    pages: list[list[int]] = []
    url: str | None = "/app/hook/deliveries?per_page=100"
    while url is not None:
        response = app_http.get(url)
        pages.append([d["id"] for d in response.json()])
        links = dict(iter_link_header(response.headers.get("link", "")))
        if len(pages) == 2:
            assert "prev" in links
            assert app_http.get(links["prev"]).json()[0]["id"] == 250
            # a delivery made meanwhile does not shift the pages that follow
            fake.add_delivery(999, "guid-new", "push", 200, delivered_at=now)
        url = links.get("next")
    assert [len(page) for page in pages] == [100, 100, 50]
    assert [i for page in pages for i in page] == list(range(250, 0, -1))

    assert len(app_http.get("/app/hook/deliveries", params={"per_page": 500}).json()) == 100
    assert len(app_http.get("/app/hook/deliveries").json()) == 30  # the default page
    failures = app_http.get("/app/hook/deliveries", params={"status": "failure", "per_page": 10})
    assert [d["id"] for d in failures.json()] == list(range(250, 150, -10))
    next_failures = dict(iter_link_header(failures.headers["link"]))["next"]
    assert "status=failure" in next_failures
    assert [d["id"] for d in app_http.get(next_failures).json()] == list(range(150, 50, -10))
    bad = app_http.get("/app/hook/deliveries", params={"cursor": "v1_424242"})
    assert bad.status_code == 422


# ------------------------------------------------------------------------------ scale


def test_a_thousand_repositories_are_cheap_to_add_and_page_through(
    fake: FakeGitHub, http: httpx.Client, key_pair: tuple[str, str]
) -> None:
    began = time.perf_counter()
    repos = fake.add_repos(1000, installation_id=7, workflows=[("verify-main.yml", "Verify main")])
    assert time.perf_counter() - began < 2.0
    assert repos[0].full_name == "octo/app-100000"
    assert fake.repo("octo", "app-100999").repo_id == 100999

    http.headers["Authorization"] = f"token {installation_token(http, key_pair[0])}"
    names: list[str] = []
    url: str | None = "/installation/repositories?per_page=100"
    pages = 0
    began = time.perf_counter()
    while url is not None:
        response = http.get(url)
        body = response.json()
        assert body["total_count"] == 1000
        names.extend(r["full_name"] for r in body["repositories"])
        url = dict(iter_link_header(response.headers.get("link", ""))).get("next")
        pages += 1
    assert time.perf_counter() - began < 10.0
    assert pages == 10
    assert names == sorted(r.full_name for r in repos)
    capped = http.get("/installation/repositories", params={"per_page": 500})
    assert len(capped.json()["repositories"]) == 100
    unchanged = http.get(
        "/installation/repositories",
        params={"per_page": 500},
        headers={"If-None-Match": capped.headers["etag"]},
    )
    assert unchanged.status_code == 304


def test_app_installations_paginate(fake: FakeGitHub, app_http: httpx.Client) -> None:
    for installation_id in range(1, 151):
        fake.add_repos(
            1,
            installation_id=installation_id,
            owner=f"org{installation_id}",
            first_repo_id=installation_id,
        )
    first = app_http.get("/app/installations", params={"per_page": 100})
    links = dict(iter_link_header(first.headers["link"]))
    second = app_http.get(links["next"])
    assert "next" not in dict(iter_link_header(second.headers["link"]))
    ids = [i["id"] for i in first.json()] + [i["id"] for i in second.json()]
    assert ids == list(range(1, 151))


def test_runs_filter_by_branch_event_status_sha_and_date_newest_first(
    fake: FakeGitHub, gh: httpx.Client, repo: FakeRepo
) -> None:
    repo.add_workflow("verify-main.yml", name="Verify main", workflow_id=56)
    repo.add_workflow("deploy.yml", name="Deploy", workflow_id=55)
    for n in range(1, 5):
        repo.add_commit(sha(n), files=[])
    old_ok = repo.add_completed_run("verify-main.yml", head_sha=sha(1))
    failed = repo.add_completed_run("verify-main.yml", head_sha=sha(2), conclusion="failure")
    other_branch = repo.add_completed_run("verify-main.yml", head_sha=sha(3), head_branch="release")
    scheduled = repo.add_completed_run("verify-main.yml", head_sha=sha(3), event="schedule")
    newest_ok = repo.add_completed_run("verify-main.yml", head_sha=sha(3))
    running = repo.add_run(
        "verify-main.yml",
        event="push",
        actor="dev",
        head_branch="main",
        head_sha=sha(4),
        display_title="Verify",
    )
    repo.start_run(running)
    repo.add_completed_run("deploy.yml", head_sha=sha(3))  # another workflow

    url = f"{R}/actions/workflows/verify-main.yml/runs"

    def ids(**params: Any) -> list[int]:
        response = gh.get(url, params=params)
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()["workflow_runs"]]

    assert ids() == [running, newest_ok, scheduled, other_branch, failed, old_ok]
    wanted = {"branch": "main", "event": "push", "status": "success"}
    assert ids(**wanted) == [newest_ok, old_ok]
    assert ids(**wanted, per_page=1) == [newest_ok]
    assert ids(branch="main", status="completed") == [newest_ok, scheduled, failed, old_ok]
    assert ids(status="in_progress") == [running]
    assert ids(status="failure") == [failed]
    assert ids(head_sha=sha(3), event="push") == [newest_ok, other_branch]
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert len(ids(created=f">={today}")) == 6
    assert ids(created="<2001-01-01") == []
    assert ids(created=f"2001-01-01..{today}") == ids()
    assert gh.get(url, params={"created": ">=yesterday"}).status_code == 422

    newest = gh.get(url, params={**wanted, "per_page": 1})
    assert newest.json()["total_count"] == 2
    run = newest.json()["workflow_runs"][0]
    assert (run["head_sha"], run["event"], run["head_branch"]) == (sha(3), "push", "main")
    assert (run["status"], run["conclusion"]) == ("completed", "success")
    etag = newest.headers["etag"]
    conditional = {"If-None-Match": etag}
    again = gh.get(url, params={**wanted, "per_page": 1}, headers=conditional)
    assert again.status_code == 304
    repo.add_completed_run("verify-main.yml", head_sha=sha(4))
    moved = gh.get(url, params={**wanted, "per_page": 1}, headers=conditional)
    assert moved.status_code == 200
    assert moved.json()["workflow_runs"][0]["head_sha"] == sha(4)


def test_a_verification_that_no_webhook_announced_is_listed(
    fake: FakeGitHub, receiver: WebhookReceiver, gh: httpx.Client, repo: FakeRepo
) -> None:
    repo.add_workflow("verify-main.yml", name="Verify main", workflow_id=56)
    repo.add_commit(sha(1), files=[])
    run_id = repo.add_completed_run("verify-main.yml", head_sha=sha(1), actor="dev")
    runs = gh.get(
        f"{R}/actions/workflows/verify-main.yml/runs",
        params={"branch": "main", "event": "push", "status": "success"},
    ).json()["workflow_runs"]
    assert [(r["id"], r["head_sha"], r["conclusion"]) for r in runs] == [
        (run_id, sha(1), "success")
    ]
    assert runs[0]["actor"]["login"] == "dev"
    assert fake.deliveries() == []
    assert receiver.received == []
    with pytest.raises(ValueError, match="not a run conclusion"):
        repo.add_completed_run("verify-main.yml", head_sha=sha(1), conclusion="great")
