"""Signed, expiring links to the decision page of one (repository, SHA). Pure: time is passed in.

    <public_url>/?repo=<repository id>&sha=<40 hex>&exp=<unix seconds>&sig=<64 hex>

`sig` is HMAC-SHA256, under the link secret, of `v1:<repo>:<sha>:<exp>`; it is compared in
constant time. A link is valid while `now < exp`, and only if `exp` is at most the link
lifetime (plus a little clock skew) ahead: shortening the lifetime shortens the links
already handed out too. Every status the governor posts carries a fresh link.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import urlencode

import msgspec

VERSION: Final = "v1"
SKEW: Final = timedelta(minutes=5)
"""How far a link's expiry may lie beyond the lifetime: clocks of instances differ a little."""
_REPO: Final = re.compile(r"[1-9][0-9]{0,17}")
_SHA: Final = re.compile(r"[0-9a-f]{40}")
_EXP: Final = re.compile(r"[1-9][0-9]{0,11}")
_SIG: Final = re.compile(r"[0-9a-f]{64}")
PARAMS: Final = ("repo", "sha", "exp", "sig")


class LinkTarget(msgspec.Struct, frozen=True):
    """What a valid link points at."""

    repo_id: int
    sha: str
    expires: int


def signature(secret: bytes, repo_id: int, sha: str, expires: int) -> str:
    message = f"{VERSION}:{int(repo_id)}:{sha}:{int(expires)}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def expiry(now: datetime, ttl: timedelta) -> int:
    """The expiry of a link made at `now`, in whole Unix seconds."""
    return int((now + ttl).timestamp())


def link_query(secret: bytes, repo_id: int, sha: str, now: datetime, ttl: timedelta) -> str:
    expires = expiry(now, ttl)
    sig = signature(secret, repo_id, sha, expires)
    return urlencode({"repo": int(repo_id), "sha": sha, "exp": expires, "sig": sig})


def make_link(
    public_url: str, secret: bytes, repo_id: int, sha: str, *, now: datetime, ttl: timedelta
) -> str:
    return f"{public_url.rstrip('/')}/?{link_query(secret, repo_id, sha, now, ttl)}"


def _single(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = query.get(name, ())
    return values[0] if len(values) == 1 else None


def verify(
    secret: bytes, query: Mapping[str, Sequence[str]], now: datetime, ttl: timedelta
) -> LinkTarget | None:
    """The target of a valid link; None for anything else (the caller answers 404).

    `query`: every value of each parameter, as sent (a repeated parameter is refused).
    """
    repo, sha, exp, sig = (_single(query, name) for name in PARAMS)
    if repo is None or sha is None or exp is None or sig is None:
        return None
    if not (
        _REPO.fullmatch(repo)
        and _SHA.fullmatch(sha)
        and _EXP.fullmatch(exp)
        and _SIG.fullmatch(sig)
    ):
        return None
    repo_id, expires = int(repo), int(exp)
    expected = signature(secret, repo_id, sha, expires)
    if not hmac.compare_digest(expected.encode(), sig.encode()):
        return None
    if not now.timestamp() < expires <= (now + ttl + SKEW).timestamp():
        return None
    return LinkTarget(repo_id, sha, expires)
