"""The fake GitHub with ETags scoped to the credential that asked, as GitHub's are.

GitHub Support, asked about conditional requests from a GitHub App: "It's currently
expected for ETags to be auth token specific" (eclipse-csi/otterdog#201, 2024; also
github/docs#34689). An installation token lives one hour, so an ETag kept from an earlier
token gets a full 200, counted against the rate limit, not a 304. The plain fake tags a
body by its bytes alone, which is the best case; this one appends a digest of the
`Authorization` header, so only the same token's tag matches.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler

from tests.support.fake_github import FakeGitHub, _Answer

_asking = threading.local()


def _scope() -> str | None:
    authorization: str | None = getattr(_asking, "authorization", None)
    if authorization is None:
        return None
    return hashlib.sha256(authorization.encode()).hexdigest()[:12]


class TokenScopedEtagGitHub(FakeGitHub):
    """FakeGitHub whose ETags are `"<body digest>-<credential digest>"` while `scoped` is
    True (settable at any time); False: the plain fake's."""

    scoped: bool = True

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        scoped = handler.headers.get("authorization", "") if self.scoped else None
        _asking.authorization = scoped
        try:
            super()._serve(handler)
        finally:
            _asking.authorization = None

    @staticmethod
    def _conditional(
        method: str, answer: _Answer, if_none_match: str | None
    ) -> tuple[_Answer, bytes]:
        scope = _scope()
        if scope is None:
            return FakeGitHub._conditional(method, answer, if_none_match)
        suffix = f'-{scope}"'
        # Only tags handed to this credential can match; they are passed on unscoped.
        mine = [
            tag.strip().removesuffix(suffix) + '"'
            for tag in (if_none_match or "").split(",")
            if tag.strip().endswith(suffix)
        ]
        answered, data = FakeGitHub._conditional(method, answer, ", ".join(mine) or None)
        etag = answered.headers.get("etag")
        if etag is not None:
            answered.headers["etag"] = etag.removesuffix('"') + suffix
        return answered, data
