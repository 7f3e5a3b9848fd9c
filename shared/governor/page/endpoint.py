"""The decision page over HTTP: a request's method and query in, status, headers and body out.

Anything that is not a valid, unexpired link to a recorded decision gets the same 404,
byte for byte: unsigned, tampered, expired, malformed, an unknown repository or SHA. The
store failing is a 503 without details (they go to the log). Only GET and HEAD.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final

import msgspec

from governor import links
from governor.ledger import DecisionRecord, Ledger
from governor.settings import AppSettings, ConfigError
from governor.state import ReleaseState

log = logging.getLogger("governor.page")

HTML: Final = "text/html; charset=utf-8"
ALLOWED_METHODS: Final = ("GET", "HEAD")
NOT_FOUND: Final = (
    b'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
    b'<meta name="viewport" content="width=device-width, initial-scale=1">'
    b"<title>Not found</title></head>\n<body><h1>Not found</h1>\n"
    b"<p>This link is not valid. Open the page again from the commit status on GitHub: "
    b"every status carries a fresh link.</p></body></html>\n"
)
METHOD_NOT_ALLOWED: Final = (
    b'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
    b"<title>Method not allowed</title></head>\n<body><h1>Method not allowed</h1>\n"
    b"<p>This page only answers GET.</p></body></html>\n"
)
UNAVAILABLE: Final = (
    b'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
    b"<title>Unavailable</title></head>\n<body><h1>Temporarily unavailable</h1>\n"
    b"<p>Try again in a minute.</p></body></html>\n"
)
STATIC_POLICY: Final = (
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def security_headers(policy: str = STATIC_POLICY) -> dict[str, str]:
    return {
        "Content-Type": HTML,
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "private, no-store",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Resource-Policy": "same-origin",
    }


class Answer(msgspec.Struct, frozen=True):
    status: int
    body: bytes
    headers: dict[str, str] = msgspec.field(default_factory=security_headers)


def not_found() -> Answer:
    return Answer(404, NOT_FOUND)


def unavailable() -> Answer:
    return Answer(503, UNAVAILABLE, {**security_headers(), "Retry-After": "30"})


def answer(
    method: str,
    query: Mapping[str, Sequence[str]],
    *,
    settings: Callable[[], AppSettings],
    ledger: Callable[[], Ledger],
    now: datetime,
) -> Answer:
    """The answer to one request for the page. Never raises."""
    if method not in ALLOWED_METHODS:
        return Answer(
            405, METHOD_NOT_ALLOWED, {**security_headers(), "Allow": ", ".join(ALLOWED_METHODS)}
        )
    try:
        config = settings()
    except ConfigError as exc:
        log.error("decision page: governor is not configured: %s", exc)
        return unavailable()
    target = _target(config, query, now)
    if target is None:
        return not_found()
    try:
        records = ledger()
        record = records.read_decision(target.repo_id, target.sha)
        state = None if record is None else records.read_state(target.repo_id, record.repo)
    except Exception as exc:  # the store, or a record it cannot read: never a 500
        log.error("decision page: cannot read the records: %s: %s", type(exc).__name__, exc)
        return unavailable()
    if record is None or state is None:
        return not_found()
    return _page(record, state, now, config)


def _target(
    config: AppSettings, query: Mapping[str, Sequence[str]], now: datetime
) -> links.LinkTarget | None:
    if config.link_secret is None:
        log.warning("decision page: GOVERNOR_LINK_SECRET is not set, so no link is valid")
        return None
    secret = config.link_secret.get_secret_value().encode()
    return links.verify(secret, query, now, timedelta(days=config.link_ttl_days))


def _page(
    record: DecisionRecord, state: ReleaseState, now: datetime, config: AppSettings
) -> Answer:
    try:
        from governor.page import render, view

        page = view.build(record, state, now, view.web_root(config.github_api_url))
        body = render.render(page)
    except Exception:
        log.exception("decision page: rendering failed", extra={"sha": record.sha})
        return unavailable()
    return Answer(200, body, security_headers(render.content_security_policy()))
