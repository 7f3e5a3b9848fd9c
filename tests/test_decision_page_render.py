"""The decision page's HTML: every stored string is text, every link is built from trusted
parts, and the answers for anything but a valid link to a recorded decision are one 404."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from governor import links
from governor.ledger import DecisionRecord, Evaluation, Ledger, decision_key, state_key
from governor.page import endpoint, render, view
from governor.settings import AppSettings
from governor.state import Dispatch, Failure, ReleaseState
from governor.store import open_store, update

from tests.support.hostile_records import GITHUB, NOW, PROD, REPO_ID, SHA, hostile, rendered

SECRET = "link-secret-for-tests-0123456789"
PAYLOADS = (
    "<script>window.__pwned=1</script>",
    '"><img src=x onerror=window.__pwned=2>',
    "javascript:alert(3)",
    "' onmouseover='alert(4)",
)
ALLOWED_TAGS = {
    "html",
    "head",
    "meta",
    "title",
    "style",
    "body",
    "main",
    "header",
    "p",
    "span",
    "section",
    "h2",
    "dl",
    "dt",
    "dd",
    "code",
    "ul",
    "li",
    "a",
    "ol",
    "strong",
    "br",
}


class Page(HTMLParser):
    """The parsed page: tags with their attributes, visible text, the stylesheet."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.style = ""
        self._in_style = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data
        else:
            self.text.append(data)

    @property
    def visible(self) -> str:
        return " ".join(" ".join(self.text).split())

    def hrefs(self) -> list[str]:
        return [str(attrs.get("href")) for tag, attrs in self.tags if tag == "a"]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_every_stored_string_renders_as_text_and_never_as_markup(payload: str) -> None:
    html = rendered(*hostile(payload))
    page = Page(html)

    assert {tag for tag, _ in page.tags} <= ALLOWED_TAGS
    assert "<script" not in html.lower() and "<img" not in html.lower()
    for _tag, attrs in page.tags:
        assert not [name for name in attrs if name.startswith("on")], attrs
    # The payload is shown, as text, wherever it was stored.
    shown = page.visible
    for expected in (
        f"{payload}.py",
        f"deploy/{payload}",
        f"docs/{payload}.md",
        f"note {payload}",
        f"refs/heads/{payload}",
        f"{payload}: unknown key",
        f"future {payload}",
        f"detail {payload}",
        f"approval:{payload}",
        f"verified {payload}",
        f"by {payload}: {payload}",  # the emergency freeze
    ):
        assert " ".join(expected.split()) in shown, expected


@pytest.mark.parametrize("payload", PAYLOADS)
def test_links_are_built_from_trusted_parts_only(payload: str) -> None:
    page = Page(rendered(*hostile(payload)))

    hrefs = page.hrefs()
    assert hrefs == [
        f"{GITHUB}/octo/app/commit/{SHA}",
        f"{GITHUB}/octo/app/commit/{SHA}",
        f"{GITHUB}/octo/app/actions/runs/777",
        f"{GITHUB}/octo/app/actions/runs/4242",
        f"{GITHUB}/octo/app/issues/17",
    ]
    assert all(payload not in href for href in hrefs)


@pytest.mark.parametrize(
    "name", ["javascript:alert(1)//x/y", "octo/<script>", 'octo/a"b', "../x/y", "octo"]
)
def test_a_repository_name_that_is_not_one_gets_no_links(name: str) -> None:
    record, state = hostile("x")
    page = Page(rendered(record.model_copy(update={"repo": name}), state))
    assert page.hrefs() == []
    assert name in page.visible


def test_the_inline_stylesheet_is_the_one_the_policy_allows() -> None:
    page = Page(rendered(*hostile("x")))
    digest = base64.b64encode(hashlib.sha256(page.style.encode()).digest()).decode()
    assert page.style == render.stylesheet()
    assert f"style-src 'sha256-{digest}'" in render.content_security_policy()
    assert "script-src" not in render.content_security_policy()
    assert render.content_security_policy().startswith("default-src 'none'")


def record_with(outcome: str, reason: str, **changes: object) -> DecisionRecord:
    evaluation = Evaluation(
        at=NOW,
        delivery="d",
        trigger="verified",
        outcome=outcome,
        reason=reason,
        risk="LOW",
        detail="low-risk change",
        inputs={"high_paths": [], "medium_paths": []},
    )
    evaluation = evaluation.model_copy(update=changes)
    return DecisionRecord(repo_id=REPO_ID, repo="octo/app", sha=SHA, evaluations=(evaluation,))


@pytest.mark.parametrize(
    ("record", "state", "headline", "todo"),
    [
        (
            record_with("HOLD", "high_risk_no_approval", risk="HIGH"),
            ReleaseState(repo_id=REPO_ID, repo="octo/app", production_sha=PROD),
            "HELD",
            "Approve it.",
        ),
        (
            record_with("HOLD", "cooldown", until=NOW + timedelta(minutes=30)),
            ReleaseState(repo_id=REPO_ID, repo="octo/app", production_sha=PROD),
            "HELD",
            "Resumes within 5 min after 2026-11-24 14:30 UTC.",
        ),
        (
            record_with("ALLOW", "allow_low"),
            ReleaseState(
                repo_id=REPO_ID,
                repo="octo/app",
                production_sha=PROD,
                dispatches=(Dispatch(sha=SHA, intent_id="i", at=NOW, run_id=9),),
            ),
            "GOING OUT",
            "Nothing to do: the deploy goes ahead.",
        ),
        (
            record_with("ALLOW", "allow_low"),
            ReleaseState(repo_id=REPO_ID, repo="octo/app", production_sha=SHA, production_at=NOW),
            "DEPLOYED",
            "Nothing to do.",
        ),
        (
            record_with("ALLOW", "allow_low"),
            ReleaseState(
                repo_id=REPO_ID,
                repo="octo/app",
                production_sha=PROD,
                dispatches=(Dispatch(sha=SHA, intent_id="i", at=NOW, run_id=9),),
                failures={SHA: Failure(sha=SHA, first_at=NOW, last_at=NOW, issue_number=3)},
            ),
            "FAILED",
            "Look at the deploy run and the failure issue; push a fix.",
        ),
    ],
)
def test_the_headline_says_at_a_glance_what_happens(
    record: DecisionRecord, state: ReleaseState, headline: str, todo: str
) -> None:
    page = view.build(record, state, NOW, GITHUB)
    assert page.headline.value == headline
    assert page.todo == todo
    assert f">{headline}<" in render.render(page).decode()


def test_a_hold_that_ends_by_itself_says_when() -> None:
    record = record_with("HOLD", "rate_limit", until=NOW + timedelta(hours=1, minutes=5))
    state = ReleaseState(repo_id=REPO_ID, repo="octo/app", production_sha=PROD)
    page = view.build(record, state, NOW, GITHUB)
    assert page.clears == "2026-11-24 15:05:00 UTC (by itself), in 1 h 5 min"


@pytest.mark.parametrize(
    ("api", "web"),
    [
        ("https://api.github.com", "https://github.com"),
        ("https://api.github.com/", "https://github.com"),
        ("https://ghe.example/api/v3", "https://ghe.example"),
    ],
)
def test_web_root_of_the_api(api: str, web: str) -> None:
    assert view.web_root(api) == web


# -- the endpoint, on a real local store ---------------------------------------------------


def config(store: Path, **values: object) -> AppSettings:
    base: dict[str, object] = {
        "store_url": store.as_uri(),
        "webhook_secret": "w" * 16,
        "link_secret": SECRET,
        "public_url": "https://pages.example",
    }
    return AppSettings(**{**base, **values})  # type: ignore[arg-type]


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    store = open_store(tmp_path.as_uri())
    record, state = hostile("<b>x</b>")
    update(store, decision_key(REPO_ID, SHA), lambda _old: record.model_dump_json().encode())
    update(store, state_key(REPO_ID), lambda _old: state.model_dump_json().encode())
    return tmp_path


def query(repo: int = REPO_ID, sha: str = SHA, now: datetime = NOW) -> dict[str, list[str]]:
    url = links.make_link(
        "https://p.example", SECRET.encode(), repo, sha, now=now, ttl=timedelta(days=30)
    )
    return parse_qs(urlsplit(url).query)


def ask(
    store: Path,
    q: dict[str, list[str]],
    *,
    method: str = "GET",
    now: datetime = NOW,
    ledger: Callable[[], Ledger] | None = None,
    **values: object,
) -> endpoint.Answer:
    return endpoint.answer(
        method,
        q,
        settings=lambda: config(store, **values),
        ledger=ledger or (lambda: Ledger(open_store(store.as_uri()))),
        now=now,
    )


def test_a_valid_link_gets_the_page_with_the_security_headers(stored: Path) -> None:
    answer = ask(stored, query())
    assert answer.status == 200
    assert b"&lt;b&gt;x&lt;/b&gt;.py" in answer.body
    headers = answer.headers
    assert headers["Content-Security-Policy"] == render.content_security_policy()
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "private, no-store"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Content-Type"] == "text/html; charset=utf-8"


def test_everything_but_a_valid_link_to_a_record_is_the_same_404(stored: Path) -> None:
    good = query()
    tampered = {**good, "sig": [good["sig"][0][:-1] + ("0" if good["sig"][0][-1] != "0" else "1")]}
    cases = {
        "unsigned": {k: v for k, v in good.items() if k != "sig"},
        "tampered": tampered,
        "expired": query(now=NOW - timedelta(days=30)),
        "malformed": {"repo": ["x"], "sha": ["y"], "exp": ["z"], "sig": ["w"]},
        "empty": {},
        "unknown repo": query(repo=REPO_ID + 1),
        "unknown sha": query(sha="e" * 40),
    }
    answers = {name: ask(stored, q) for name, q in cases.items()}
    answers["no link secret"] = ask(stored, good, link_secret=None)
    for name, answer in answers.items():
        assert (answer.status, answer.body) == (404, endpoint.NOT_FOUND), name
        assert answer.headers == endpoint.security_headers(), name


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_only_get_and_head(stored: Path, method: str) -> None:
    answer = ask(stored, query(), method=method)
    assert answer.status == 405 and answer.headers["Allow"] == "GET, HEAD"
    assert ask(stored, query(), method="HEAD").status == 200


def test_a_store_failure_is_a_503_without_details(stored: Path) -> None:
    def broken() -> Ledger:
        raise OSError("disk on fire at /secret/path")

    answer = ask(stored, query(), ledger=broken)
    assert (answer.status, answer.body) == (503, endpoint.UNAVAILABLE)
    assert b"fire" not in answer.body


def test_an_unreadable_record_is_a_503_not_a_500(stored: Path) -> None:
    update(open_store(stored.as_uri()), decision_key(REPO_ID, SHA), lambda _old: b"{not json")
    assert ask(stored, query()).status == 503


def test_every_reason_code_has_a_title_in_words() -> None:
    from governor.decision import Reason

    missing = [reason.value for reason in Reason if not view.TITLES.get(reason)]
    assert missing == [], f"reasons without a title on the decision page: {missing}"
