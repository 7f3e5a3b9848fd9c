"""The decision page in a real browser: headless Chromium (Debian's package) loads the pages
the webhook linked from its statuses: HOLD, ALLOW, a tampered and an expired link, and the
hostile strings the repository carries (paths, a PR title, the approver's login). The PR
title is linked to its pull request and reads as the text it is.

"No script ran" is checked three ways: the marker the payloads set (`window.__pwned`) is
never set, no dialog opens, and the page has no script or img element at all. A control
shows the marker check can fail: the same payload without the page's escaping does run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import chromium
from tests.support.decision_pages import (
    APPROVER,
    HELD_PATHS,
    PR_TITLE,
    Decided,
    PageSite,
    decide,
    expired,
    page_site,
    tampered,
)
from tests.support.fake_github import FakeGitHub
from tests.support.hostile_records import hostile, rendered

PHONE = {"width": 390, "height": 844}
HOLD_COLOUR = "rgb(154, 103, 0)"
GO_COLOUR = "rgb(26, 127, 55)"


@pytest.fixture(scope="module")
def site(fake: FakeGitHub, local_store_url: str) -> Iterator[PageSite]:
    with page_site(fake, local_store_url) as served:
        yield served


@pytest.fixture(scope="module")
def decided(site: PageSite) -> Decided:
    return decide(site)


class Watched:
    """A page, and what it did that it should not: dialogs, errors, CSP reports."""

    def __init__(self, context: Any) -> None:
        self.page = context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.console: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", lambda message: self.console.append(message.text))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, url: str) -> int:
        response = self.page.goto(url, wait_until="load")
        assert response is not None
        return int(response.status)

    def text(self, selector: str = "body") -> str:
        return str(self.page.inner_text(selector))

    def pwned(self) -> Any:
        return self.page.evaluate("window.__pwned")

    def count(self, selector: str) -> int:
        return int(self.page.evaluate(f"document.querySelectorAll({selector!r}).length"))

    def background(self, selector: str) -> str:
        return str(
            self.page.evaluate(
                f"getComputedStyle(document.querySelector({selector!r})).backgroundColor"
            )
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium(viewport=PHONE) as context:
        yield context


@pytest.fixture
def tab(browser: Any) -> Iterator[Watched]:
    watched = Watched(browser)
    yield watched
    watched.page.close()


def assert_nothing_ran(tab: Watched) -> None:
    assert tab.pwned() is None
    assert tab.dialogs == []
    assert tab.errors == []
    assert tab.count("script") == 0 and tab.count("img") == 0 and tab.count("svg") == 0
    assert tab.count("[onerror],[onload],[onmouseover]") == 0


def test_the_marker_check_can_fail(tab: Watched) -> None:
    """Control: the payloads do run in this browser when a page does not escape them."""
    tab.page.set_content(f"<p>{HELD_PATHS[0]}</p><p>{APPROVER}</p><p>{PR_TITLE}</p>")
    tab.page.wait_for_function("window.__pwned !== undefined")
    assert tab.pwned() in (1, 4, 5, 6)


def test_the_pull_request_title_alone_would_run_unescaped(tab: Watched) -> None:
    """Control for the title: on its own, unescaped, it does run."""
    tab.page.set_content(f"<p>{PR_TITLE}</p>")
    tab.page.wait_for_function("window.__pwned !== undefined")
    assert tab.pwned() in (4, 5)


def test_a_held_page_reads_held_and_shows_the_hostile_paths_as_text(
    tab: Watched, decided: Decided
) -> None:
    assert tab.open(decided.held_link) == 200

    assert tab.text("#headline") == "HELD"
    assert "high_risk_no_approval" in tab.text("#reason")
    assert tab.text("#todo") == "Approve it."
    paths = tab.text("#risk-paths")
    assert HELD_PATHS[0] in paths and HELD_PATHS[1] in paths, paths
    assert_nothing_ran(tab)
    # the stylesheet allowed by its hash applied; a wrong hash would leave it unstyled
    assert tab.background("#verdict") == HOLD_COLOUR
    # readable on a phone: nothing wider than the screen
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_an_approved_page_reads_going_out_and_shows_the_approver_as_text(
    tab: Watched, decided: Decided
) -> None:
    assert tab.open(decided.approved_link) == 200

    assert tab.text("#headline") == "GOING OUT"
    assert "allow_high_approved" in tab.text("#reason")
    assert tab.text("#todo") == "Nothing to do: the deploy goes ahead."
    assert f"approved by {APPROVER}" in tab.text("#detail")
    history = tab.text("#history")
    assert history.index("allow_high_approved") < history.index("high_risk_no_approval")
    links = tab.page.eval_on_selector_all("#links a", "els => els.map(e => e.href)")
    assert any("/actions/runs/" in href for href in links), links
    assert all(href.startswith(decided.gov.fake.url + "/") for href in links), links
    assert_nothing_ran(tab)
    assert tab.background("#verdict") == GO_COLOUR
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_the_content_security_policy_blocks_a_script_that_got_in_anyway(
    tab: Watched, decided: Decided
) -> None:
    """Defence in depth: even a script element added to the page does not run."""
    assert tab.open(decided.held_link) == 200
    tab.page.evaluate(
        """() => {
          window.__violations = [];
          document.addEventListener('securitypolicyviolation',
            e => window.__violations.push(e.violatedDirective));
          const s = document.createElement('script');
          s.textContent = 'window.__pwned = 7';
          document.body.append(s);
        }"""
    )
    tab.page.wait_for_function("window.__violations.length > 0")
    assert tab.pwned() is None
    assert tab.page.evaluate("window.__violations")[0].startswith("script-src")


def test_the_pull_request_is_linked_with_its_hostile_title_shown_as_text(
    tab: Watched, decided: Decided
) -> None:
    assert tab.open(decided.approved_link) == 200

    pulls = tab.page.eval_on_selector_all(
        "#links a[href*='/pull/']", "els => els.map(e => [e.href, e.innerText])"
    )
    base = f"{decided.gov.fake.url}/{decided.gov.repo.full_name}"
    assert pulls == [[f"{base}/pull/7", f"Pull request #7: {PR_TITLE}"]], pulls
    assert PR_TITLE in tab.text("#links")
    assert tab.page.evaluate("typeof window.__pwned") == "undefined"
    assert_nothing_ran(tab)


@pytest.mark.parametrize("kind", ["tampered", "expired"])
def test_a_tampered_or_expired_link_shows_not_found(
    tab: Watched, site: PageSite, decided: Decided, kind: str
) -> None:
    url = (
        tampered(decided.held_link)
        if kind == "tampered"
        else expired(decided.held_link, site.secret)
    )

    assert tab.open(url) == 404

    assert tab.text("h1") == "Not found"
    body = tab.text()
    assert "HELD" not in body and decided.held[:7] not in body and "infra/" not in body
    assert_nothing_ran(tab)


def test_a_page_of_long_unbroken_strings_still_fits_a_phone(tab: Watched) -> None:
    """Every string an attacker (or a long SHA, repository or branch name) puts on the page
    wraps: 120 characters without a break point in every stored field, and no element is
    wider than the phone's screen."""
    tab.page.set_content(rendered(*hostile("W" * 120)))
    assert "W" * 120 in tab.text("body")
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
