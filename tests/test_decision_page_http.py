"""The decision page over HTTP: functions-framework serves decision_page and github_webhook
on loopback, against one local store; the records come from the webhook deciding SHAs of a
repository on the fake GitHub, and the links are the ones it put in the commit statuses."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from governor.ledger import decision_key
from governor.page.endpoint import NOT_FOUND, UNAVAILABLE
from governor.store import ABSENT, open_store
from markupsafe import escape

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
    status_link,
    tampered,
)
from tests.support.e2e import deployed_base, function_env, new_repo
from tests.support.fake_github import FakeGitHub
from tests.support.functions_server import serve_function
from tests.support.governed import BASE_POLICY, DEPLOY_FILE, Governed

PATTERN_POLICY = (
    BASE_POLICY
    + "approval:\n  mode: comment\n"
    + "high_risk_paths: ['services/payments/**', '!services/payments/docs/**', '*.sql',"
    + " 'ops/<i>x</i>/**']\n"
    + "medium_risk_paths: ['config/*.yaml', 'services/**']\n"
)
"""The trusted policy of the patterned repository: its own patterns, one carrying markup."""
PATTERN_PATHS = {
    "services/payments/api.py": ("HIGH", "services/payments/**"),
    "services/payments/schema.sql": ("HIGH", "*.sql"),  # the last matching pattern decides
    "ops/<i>x</i>/run.sh": ("HIGH", "ops/<i>x</i>/**"),
    "services/payments/docs/guide.md": ("MEDIUM", "services/**"),  # negated in HIGH
    "config/app.yaml": ("MEDIUM", "config/*.yaml"),
}
NOT_RISKY_HERE = ("infra/main.tf", "README.md")
"""infra/main.tf is HIGH under the default patterns (the SHA's own policy), LOW here."""
COMMENT_TITLE = "<script>window.__pwned=1</script><img src=x onerror=window.__pwned=2>"
REVIEWER = "reviewer"
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


@dataclass(frozen=True)
class Patterned:
    gov: Governed
    sha: str
    link: str


@pytest.fixture(scope="module")
def patterned(site: PageSite) -> Patterned:
    """A SHA held under a trusted policy with its own patterns, then approved by comment
    on pull request #9 (titled with a script payload)."""
    gov = new_repo(site.fake, site.store_url, site.webhook_url)
    deployed_base(gov, PATTERN_POLICY)
    sha = gov.commit("patterns", [*PATTERN_PATHS, *NOT_RISKY_HERE])  # own policy: defaults
    answer = gov.send(gov.verified(sha))
    assert answer.json()["reason"] == "high_risk_no_approval", answer.text
    gov.repo.add_pull(
        9, user="author", head_sha="e" * 40, merge_commit_sha=sha, title=COMMENT_TITLE
    )
    gov.repo.set_permission(REVIEWER, "maintain")
    comment = gov.repo.comment_payload(9, "/approve-deploy", REVIEWER)
    answer = gov.send(comment, "issue_comment")
    assert answer.json()["evaluations"][sha]["reason"] == "allow_high_approved", answer.text
    return Patterned(gov, sha, status_link(gov, sha))


def risk_section(html: str) -> str:
    return html[html.index('id="risk"') : html.index('id="production"')]


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
    # The pull request it was approved on: linked, its title as text.
    escaped_title = (
        "Fix &lt;img src=x onerror=window.__pwned=4&gt; "
        "&#34;&gt;&lt;script&gt;window.__pwned=5&lt;/script&gt;"
    )
    assert (
        f'<a href="{base}/pull/7" rel="noopener noreferrer">Pull request #7: {escaped_title}</a>'
        in html
    )
    assert PR_TITLE not in html
    assert "listed on the commit&#39;s page" not in html


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


def test_the_page_names_the_pattern_of_the_trusted_policy_behind_each_path(
    patterned: Patterned,
) -> None:
    gov = patterned.gov
    production = gov.state().production_sha
    response = get(patterned.link)

    assert response.status_code == 200, response.text
    html = response.text
    assert ">GOING OUT<" in html and "allow_high_approved" in html
    risk = risk_section(html)
    for path, (level, pattern) in PATTERN_PATHS.items():
        item = (
            f'<li><span class="tag {level}">{level}</span> <code>{escape(path)}</code> '
            f"matches <code>{escape(pattern)}</code></li>"
        )
        assert item in risk, (path, risk)
    assert "ops/&lt;i&gt;x&lt;/i&gt;/**" in risk and "<i>" not in html
    assert "infra/main.tf" not in risk and "README.md" not in risk
    assert "pattern not recorded" not in html
    assert f"Patterns from the trusted policy read at production {production}" in risk


def test_the_pull_request_approved_on_by_comment_is_linked_with_its_title_as_text(
    patterned: Patterned,
) -> None:
    html = get(patterned.link).text

    base = f"{patterned.gov.fake.url}/{patterned.gov.repo.full_name}"
    escaped = (
        "&lt;script&gt;window.__pwned=1&lt;/script&gt;&lt;img src=x onerror=window.__pwned=2&gt;"
    )
    assert (
        f'<a href="{base}/pull/9" rel="noopener noreferrer">Pull request #9: {escaped}</a>' in html
    )
    assert COMMENT_TITLE not in html
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "via comment at " in html  # the approval itself, under Approvals of this SHA


def test_a_record_without_policy_texts_says_the_pattern_is_not_recorded(
    site: PageSite, patterned: Patterned
) -> None:
    """The same evaluations as a record written before they kept their replay data
    (policy texts, changed files, the state judged on), under another repository id."""
    store = open_store(site.store_url)
    stored = store.get(decision_key(patterned.gov.repo.repo_id, patterned.sha))
    assert stored is not None
    raw = json.loads(stored.data)
    del raw["policies"], raw["changes"]
    for evaluation in raw["evaluations"]:
        del evaluation["replay"]
    older_id = patterned.gov.repo.repo_id + 700_000
    raw["repo_id"] = older_id
    store.put(
        decision_key(older_id, patterned.sha),
        json.dumps(raw).encode(),
        if_generation_match=ABSENT,
    )

    response = get(resigned(patterned.link, site.secret, repo=older_id))

    assert response.status_code == 200, response.text
    risk = risk_section(response.text)
    for path, (level, _) in PATTERN_PATHS.items():
        item = (
            f'<li><span class="tag {level}">{level}</span> <code>{escape(path)}</code> '
            '<span class="muted">(pattern not recorded)</span></li>'
        )
        assert item in risk, (path, risk)
    assert " matches " not in risk and "Patterns from" not in risk
    # Its approvals were kept only in the replay data and the state of the repository:
    # nothing names the pull request, so the page points at the commit's page for it.
    assert "Pull request: listed on the commit&#39;s page" in response.text


def test_the_pull_request_stays_linked_once_the_sha_is_deployed(patterned: Patterned) -> None:
    """The release state forgets a SHA's approvals when it reaches production; the
    record's evaluations keep the state they were judged on, approval included."""
    gov = patterned.gov
    [run] = gov.repo.dispatched_runs(DEPLOY_FILE)
    answer = gov.send(gov.repo.complete_run(run["id"], "success"))
    assert answer.status_code == 202, answer.text
    assert gov.state().production_sha == patterned.sha
    assert gov.state().approvals_for(patterned.sha) == ()

    html = get(patterned.link).text

    assert ">DEPLOYED<" in html
    base = f"{gov.fake.url}/{gov.repo.full_name}"
    assert f'<a href="{base}/pull/9" rel="noopener noreferrer">Pull request #9: ' in html
    assert "via comment at " not in html  # no longer in the state's approvals
