"""Decision pages made the real way: the webhook function decides SHAs of a repository on
the fake GitHub, posts statuses whose links point at the decision_page function, and both
functions run on functions-framework against one local store.

The repository carries hostile strings where an attacker can put them: changed paths, a
pull request title and the approver's login.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

from governor import links

from tests.support.e2e import deployed_base, function_env, new_repo
from tests.support.fake_github import FakeGitHub
from tests.support.functions_server import serve_function
from tests.support.governed import Governed

SCRIPT_PATH = '"><script>window.__pwned=1</script>.py'
"""The path from the brief: it matches no risk pattern, so no record keeps it."""
HELD_PATHS = (
    f"infra/{SCRIPT_PATH}",
    "infra/<img src=x onerror=window.__pwned=2>.tf",
    SCRIPT_PATH,
    "src/app.py",
)
"""What the held SHA changes: the first two are HIGH (infra/**) and shown on its page."""
APPROVED_PATH = "deploy/auth/<svg onload=window.__pwned=3>.yml"
PR_TITLE = 'Fix <img src=x onerror=window.__pwned=4> "><script>window.__pwned=5</script>'
APPROVER = "maint<img/src=x/onerror=window.__pwned=6>"
"""Not a login GitHub allows; the payload says so, and the governor records what it says."""


@dataclass(frozen=True)
class PageSite:
    fake: FakeGitHub
    store_url: str
    page_url: str
    webhook_url: str
    secret: str


@dataclass(frozen=True)
class Decided:
    gov: Governed
    held: str
    """HIGH, no approval: HOLD high_risk_no_approval."""
    approved: str
    """HIGH, held, then approved by label on its pull request: ALLOW, dispatched."""
    held_link: str
    approved_link: str


@contextmanager
def page_site(fake: FakeGitHub, store_url: str) -> Iterator[PageSite]:
    """decision_page and github_webhook on loopback; statuses link to the page."""
    secret = "links-" + uuid.uuid4().hex
    page_env = function_env(fake, store_url, GOVERNOR_LINK_SECRET=secret)
    with serve_function("decision_page", page_env) as page:
        hook_env = function_env(
            fake, store_url, GOVERNOR_LINK_SECRET=secret, GOVERNOR_PUBLIC_URL=page.url
        )
        with serve_function("github_webhook", hook_env) as hook:
            yield PageSite(fake, store_url, page.url, hook.url, secret)


def status_link(gov: Governed, sha: str) -> str:
    """The target URL of the latest status the governor posted on `sha`."""
    statuses = gov.our_statuses(sha)
    assert statuses, f"no status on {sha}"
    url = statuses[-1]["target_url"]
    assert isinstance(url, str) and url, statuses[-1]
    return url


def decide(site: PageSite) -> Decided:
    gov = new_repo(site.fake, site.store_url, site.webhook_url)
    deployed_base(gov)
    held = gov.commit("held", list(HELD_PATHS))
    answer = gov.send(gov.verified(held))
    assert answer.status_code == 202 and answer.json()["reason"] == "high_risk_no_approval", (
        answer.text
    )

    approved = gov.commit("approved", [APPROVED_PATH])
    answer = gov.send(gov.verified(approved))
    assert answer.json()["reason"] == "high_risk_no_approval", answer.text
    gov.repo.add_pull(
        7, user="author", head_sha="f" * 40, merge_commit_sha=approved, title=PR_TITLE
    )
    gov.repo.set_permission(APPROVER, "maintain")
    label = gov.repo.label_added_payload(7, "deploy-approved", APPROVER)
    answer = gov.send(label, "pull_request")
    assert answer.status_code == 202, answer.text
    assert answer.json()["evaluations"][approved]["reason"] == "allow_high_approved", answer.text
    return Decided(gov, held, approved, status_link(gov, held), status_link(gov, approved))


def resigned(link: str, secret: str, **changes: str | int) -> str:
    """`link` with some parameters changed, signed again with `secret` (a valid link)."""
    parts = urlsplit(link)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update({k: str(v) for k, v in changes.items()})
    query["sig"] = links.signature(
        secret.encode(), int(query["repo"]), query["sha"], int(query["exp"])
    )
    return parts._replace(query=urlencode(query)).geturl()


def expired(link: str, secret: str) -> str:
    """A link to the same page, correctly signed, that expired a second ago."""
    return resigned(link, secret, exp=int((datetime.now(UTC) - timedelta(seconds=1)).timestamp()))


def tampered(link: str) -> str:
    """`link` with the last hex digit of its signature changed."""
    parts = urlsplit(link)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    sig = query["sig"]
    query["sig"] = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    return parts._replace(query=urlencode(query)).geturl()
