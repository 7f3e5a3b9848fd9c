"""The decision page over HTTP: functions-framework serves decision_page and github_webhook
on loopback, against one local store; the records come from the webhook deciding SHAs of a
repository on the fake GitHub, and the links are the ones it put in the commit statuses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from governor.page.endpoint import NOT_FOUND, UNAVAILABLE

from tests.support.decision_pages import (
    APPROVER,
    HELD_PATHS,
    PR_TITLE,
    SCRIPT_PATH,
    Decided,
    PageSite,
    decide,
    expired,
    page_site,
    resigned,
    tampered,
)
from tests.support.e2e import function_env
from tests.support.fake_github import FakeGitHub
from tests.support.functions_server import serve_function
from tests.support.governed import DEPLOY_FILE

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "private, no-store",
    "x-frame-options": "DENY",
}


@pytest.fixture(scope="module")
def site(fake: FakeGitHub, local_store_url: str) -> Iterator[PageSite]:
    with page_site(fake, local_store_url) as served:
        yield served


@pytest.fixture(scope="module")
def decided(site: PageSite) -> Decided:
    return decide(site)


def get(url: str, method: str = "GET") -> httpx.Response:
    return httpx.request(method, url, timeout=30)


def assert_secure(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, name
    policy = response.headers["content-security-policy"]
    assert policy.startswith("default-src 'none';") and "script-src" not in policy
    assert response.headers["content-type"] == "text/html; charset=utf-8"


def test_the_status_links_point_at_the_page_and_expire_in_30_days(
    site: PageSite, decided: Decided
) -> None:
    for link in (decided.held_link, decided.approved_link):
        parts = urlsplit(link)
        assert f"{parts.scheme}://{parts.netloc}" == site.page_url
        query = parse_qs(parts.query)
        assert set(query) == {"repo", "sha", "exp", "sig"}
        assert query["repo"] == [str(decided.gov.repo.repo_id)]
    statuses = decided.gov.our_statuses(decided.approved)
    first = parse_qs(urlsplit(statuses[0]["target_url"]).query)
    last = parse_qs(urlsplit(statuses[-1]["target_url"]).query)
    assert int(last["exp"][0]) >= int(first["exp"][0]), "each status carries a fresh link"
    lifetime = int(last["exp"][0]) - time.time()
    assert 30 * 86400 - 600 < lifetime <= 30 * 86400


def test_the_held_page_says_held_why_and_shows_the_risky_paths_as_text(
    decided: Decided,
) -> None:
    response = get(decided.held_link)

    assert response.status_code == 200, response.text
    assert_secure(response)
    html = response.text
    assert ">HELD<" in html
    assert "high_risk_no_approval" in html and "High-risk change without an approval" in html
    assert "Approve it." in html
    assert "<script" not in html.lower() and "<img" not in html.lower()
    escaped = "infra/&#34;&gt;&lt;script&gt;window.__pwned=1&lt;/script&gt;.py"
    assert escaped in html
    assert "infra/&lt;img src=x onerror=window.__pwned=2&gt;.tf" in html
    assert HELD_PATHS[0] not in html
    # Only paths that matched a pattern are recorded; the others are not on the page.
    assert "src/app.py" not in html
    assert SCRIPT_PATH.replace('"', "&#34;").replace("<", "&lt;").replace(">", "&gt;") in html
    # The links are built from the repository's name and numbers only.
    repo = decided.gov.repo
    base = f"{decided.gov.fake.url}/{repo.full_name}"
    assert f'href="{base}/commit/{decided.held}"' in html


def test_the_approved_page_says_going_out_with_its_run_and_history(decided: Decided) -> None:
    response = get(decided.approved_link)

    assert response.status_code == 200, response.text
    assert_secure(response)
    html = response.text
    assert ">GOING OUT<" in html
    assert "allow_high_approved" in html
    run = decided.gov.repo.dispatched_runs(DEPLOY_FILE)[0]
    base = f"{decided.gov.fake.url}/{decided.gov.repo.full_name}"
    assert f'href="{base}/actions/runs/{run["id"]}"' in html
    history = html[html.index('id="history"') :]
    assert history.index("allow_high_approved") < history.index("high_risk_no_approval")
    assert "approval:label" in history and "verified" in history
    assert "maint&lt;img/src=x/onerror=window.__pwned=6&gt;" in html
    assert APPROVER not in html
    assert "<img" not in html.lower() and "<svg" not in html.lower()
    assert "pwned=4" not in html and PR_TITLE not in html, "the records keep no PR title"


def test_head_answers_without_a_body_and_other_methods_get_405(decided: Decided) -> None:
    head = get(decided.held_link, "HEAD")
    assert head.status_code == 200 and head.content == b""
    assert_secure(head)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        answer = get(decided.held_link, method)
        assert answer.status_code == 405, method
        assert answer.headers["allow"] == "GET, HEAD"


def test_anything_but_a_valid_link_is_one_404_that_says_nothing(
    site: PageSite, decided: Decided
) -> None:
    link = decided.held_link
    parts = urlsplit(link)
    no_sig = parts._replace(
        query="&".join(p for p in parts.query.split("&") if not p.startswith("sig="))
    ).geturl()
    cases = {
        "tampered": tampered(link),
        "expired": expired(link, site.secret),
        "unsigned": no_sig,
        "bare": site.page_url + "/",
        "malformed": site.page_url + "/?repo=x&sha=%3Cscript%3E&exp=-1&sig=zz",
        "repeated": link + "&repo=1",
        "unknown repository": resigned(link, site.secret, repo=999_999_999),
        "unknown sha": resigned(link, site.secret, sha="e" * 40),
        "other path": site.page_url + "/admin?" + parts.query.replace("sig=", "sig=0"),
    }
    for name, url in cases.items():
        response = get(url)
        assert response.status_code == 404, (name, response.status_code, response.text)
        assert response.content == NOT_FOUND, name
        assert_secure(response)
    # The very same link, signed correctly again, is fine: the 404s above are the tampering.
    assert get(resigned(link, site.secret)).status_code == 200


def test_a_failed_deploy_shows_failed_with_the_run_and_the_failure_issue(
    site: PageSite, decided: Decided
) -> None:
    gov = decided.gov
    run = gov.repo.dispatched_runs(DEPLOY_FILE)[0]
    failed = gov.send(gov.repo.complete_run(run["id"], "failure"))
    assert failed.json()["result"] == "deploy_failed", failed.text
    issue = failed.json()["issue"]

    html = get(decided.approved_link).text

    assert ">FAILED<" in html
    base = f"{gov.fake.url}/{gov.repo.full_name}"
    assert f'href="{base}/issues/{issue}"' in html
    assert f'href="{base}/actions/runs/{run["id"]}"' in html


def test_store_and_settings_failures_are_503_without_details(
    fake: FakeGitHub, site: PageSite, decided: Decided, tmp_path: Path
) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("not a store")
    env = function_env(fake, not_a_directory.as_uri(), GOVERNOR_LINK_SECRET=site.secret)
    with serve_function("decision_page", env) as broken:
        link = decided.held_link.replace(site.page_url, broken.url)
        response = get(link)
    assert response.status_code == 503 and response.content == UNAVAILABLE
    assert response.headers["retry-after"] == "30"
    assert_secure(response)
    assert "file" not in response.text.lower()
    assert "decision page: cannot read the records" in broken.log  # the details: log only

    short = function_env(fake, site.store_url, GOVERNOR_LINK_SECRET="short")
    with serve_function("decision_page", short) as misconfigured:
        response = get(decided.held_link.replace(site.page_url, misconfigured.url))
    assert response.status_code == 503 and response.content == UNAVAILABLE
    assert "GOVERNOR_LINK_SECRET" in misconfigured.log
