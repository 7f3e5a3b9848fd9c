"""Decision page links: HMAC-SHA256 over repository, SHA and expiry; expiring; strict parsing."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from governor import links
from governor.flows.context import decision_link
from governor.settings import AppSettings

SECRET = b"link-secret-for-tests-0123456789"
NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
TTL = timedelta(days=30)
SHA = "0123456789abcdef0123456789abcdef01234567"
REPO = 5001


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def good_query(now: datetime = NOW, ttl: timedelta = TTL) -> dict[str, list[str]]:
    return query_of(links.make_link("https://pages.example", SECRET, REPO, SHA, now=now, ttl=ttl))


def test_a_link_made_now_is_valid_and_names_its_target() -> None:
    url = links.make_link("https://pages.example/x/", SECRET, REPO, SHA, now=NOW, ttl=TTL)

    assert url.startswith("https://pages.example/x/?")
    query = query_of(url)
    assert set(query) == {"repo", "sha", "exp", "sig"}
    assert query["exp"] == [str(int((NOW + TTL).timestamp()))]
    target = links.verify(SECRET, query, NOW, TTL)
    assert target == links.LinkTarget(REPO, SHA, int((NOW + TTL).timestamp()))


def test_the_signature_is_hmac_sha256_over_repo_sha_and_expiry() -> None:
    expires = int((NOW + TTL).timestamp())
    expected = hmac.new(SECRET, f"v1:{REPO}:{SHA}:{expires}".encode(), hashlib.sha256).hexdigest()
    assert good_query()["sig"] == [expected]


def test_expiry_boundary_with_an_injected_clock() -> None:
    query = good_query()
    expires = NOW + TTL
    assert links.verify(SECRET, query, expires - timedelta(seconds=1), TTL) is not None
    assert links.verify(SECRET, query, expires - timedelta(microseconds=1), TTL) is not None
    assert links.verify(SECRET, query, expires, TTL) is None
    assert links.verify(SECRET, query, expires + timedelta(days=1), TTL) is None


def test_a_shorter_lifetime_shortens_links_already_handed_out() -> None:
    query = good_query(ttl=timedelta(days=30))
    assert links.verify(SECRET, query, NOW, timedelta(days=30)) is not None
    assert links.verify(SECRET, query, NOW, timedelta(days=7)) is None
    # ...and a link is still good a little beyond the lifetime for clock skew only
    later = NOW + timedelta(minutes=4)
    assert links.verify(SECRET, good_query(now=later), NOW, TTL) is not None
    much_later = NOW + timedelta(minutes=6)
    assert links.verify(SECRET, good_query(now=much_later), NOW, TTL) is None


def flip(text: str, index: int) -> str:
    char = text[index]
    other = "1" if char != "1" else "2"
    return text[:index] + other + text[index + 1 :]


@pytest.mark.parametrize(
    ("field", "tamper"),
    [
        ("repo", lambda v: str(int(v) + 1)),
        ("sha", lambda v: flip(v, 0)),
        ("sha", lambda v: flip(v, 39)),
        ("exp", lambda v: str(int(v) - 1)),
        ("exp", lambda v: str(int(v) + 1)),
        ("sig", lambda v: flip(v, 0)),
        ("sig", lambda v: flip(v, 63)),
        ("sig", lambda v: v[:32] + "0" * 32),
    ],
)
def test_tampering_with_any_field_invalidates_the_link(
    field: str, tamper: Callable[[str], str]
) -> None:
    query = good_query()
    query[field] = [tamper(query[field][0])]
    assert links.verify(SECRET, query, NOW, TTL) is None


def test_another_secret_does_not_verify() -> None:
    assert links.verify(b"another-secret-0123456789abcdef", good_query(), NOW, TTL) is None


@pytest.mark.parametrize(
    "change",
    [
        {"sig": None},
        {"exp": None},
        {"repo": None},
        {"sha": None},
        {"sig": [""]},
        {"sig": ["short"]},
        {"repo": ["0"]},
        {"repo": ["-5001"]},
        {"repo": [" 5001"]},
        {"repo": ["5001.0"]},
        {"repo": ["9" * 40]},
        {"exp": ["1e9"]},
        {"exp": ["9" * 30]},
        {"sha": ["ABCDEF0123456789ABCDEF0123456789ABCDEF01"]},
        {"sha": ["0123456"]},
        {"sha": ["<script>alert(1)</script>"]},
        {"repo": ["5001", "5001"]},
    ],
)
def test_malformed_or_missing_parameters_are_refused(change: dict[str, list[str] | None]) -> None:
    query = good_query()
    for name, value in change.items():
        if value is None:
            query.pop(name)
        else:
            query[name] = value
    assert links.verify(SECRET, query, NOW, TTL) is None


def test_uppercase_signature_is_refused_not_normalised() -> None:
    query = good_query()
    query["sig"] = [query["sig"][0].upper()]
    assert links.verify(SECRET, query, NOW, TTL) is None


def settings(**values: object) -> AppSettings:
    base: dict[str, object] = {
        "store_url": "file:///tmp/x",
        "webhook_secret": "w" * 16,
        "public_url": "https://pages.example/",
        "link_secret": SECRET.decode(),
    }
    return AppSettings(**{**base, **values})  # type: ignore[arg-type]


def test_decision_link_is_fresh_from_the_clock_and_lives_link_ttl_days() -> None:
    config = settings(link_ttl_days=3)
    first = decision_link(config, REPO, SHA, NOW)
    later = decision_link(config, REPO, SHA, NOW + timedelta(days=2))
    assert first is not None and later is not None and first != later
    ttl = timedelta(days=3)
    assert links.verify(SECRET, query_of(first), NOW + timedelta(days=2), ttl) is not None
    assert links.verify(SECRET, query_of(first), NOW + timedelta(days=3), ttl) is None
    assert links.verify(SECRET, query_of(later), NOW + timedelta(days=4), ttl) is not None


def test_no_link_without_a_secret_or_a_public_url() -> None:
    assert decision_link(settings(link_secret=None), REPO, SHA, NOW) is None
    assert decision_link(settings(public_url=None), REPO, SHA, NOW) is None


@pytest.mark.parametrize("days", [0, 366])
def test_link_lifetime_is_bounded(days: int) -> None:
    with pytest.raises(ValueError, match="link_ttl_days"):
        settings(link_ttl_days=days)


def test_link_lifetime_defaults_to_30_days() -> None:
    assert settings().link_ttl_days == 30
