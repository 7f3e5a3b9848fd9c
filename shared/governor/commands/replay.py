"""`governor replay FILE --event NAME --url URL`: sign a payload as GitHub does and POST it.

For testing a deployment: the body is sent byte for byte as read (the signature covers
exactly those bytes), with GitHub's headers, signed with GOVERNOR_WEBHOOK_SECRET.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

import httpx
import msgspec

from governor import __version__
from governor.commands import EXIT_ERROR, EXIT_USAGE, CommandError
from governor.events import signature_for

SECRET_VARIABLE: Final = "GOVERNOR_WEBHOOK_SECRET"  # noqa: S105  (its name, not a secret)
_EVENT: Final = re.compile(r"[a-z_]{1,64}")
_GUID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,99}")
MAX_ANSWER_CHARS: Final = 64 * 1024


class ReplayResult(msgspec.Struct, frozen=True):
    url: str
    event: str
    delivery: str
    """The X-GitHub-Delivery GUID sent (given, or a new UUID)."""
    signature: str
    """The X-Hub-Signature-256 sent."""
    status: int
    ok: bool
    """2xx: exit 0; anything else exit 1."""
    content_type: str | None
    body: str
    """The answer's body as text (cut at 64 KiB)."""


def replay(
    body: bytes,
    *,
    event: str,
    url: str,
    secret: str | None,
    delivery: str | None = None,
    timeout_s: float = 30.0,
) -> ReplayResult:
    if not secret:
        raise CommandError(f"{SECRET_VARIABLE} is not set: it signs the payload", EXIT_USAGE)
    if not _EVENT.fullmatch(event):
        raise CommandError(f"--event {event!r} is not an event name (e.g. ping)", EXIT_USAGE)
    guid = delivery or str(uuid.uuid4())
    if not _GUID.fullmatch(guid):
        raise CommandError(f"--delivery {guid!r} is not a delivery GUID", EXIT_USAGE)
    if not url.startswith(("http://", "https://")):
        raise CommandError(f"--url {url!r} is not an http(s) URL", EXIT_USAGE)
    signature = signature_for(secret.encode(), body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"GitHub-Hookshot/governor-replay-{__version__}",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": guid,
        "X-Hub-Signature-256": signature,
    }
    try:
        answer = httpx.post(url, content=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise CommandError(f"POST {url} failed: {exc}", EXIT_ERROR) from None
    return ReplayResult(
        url=url,
        event=event,
        delivery=guid,
        signature=signature,
        status=answer.status_code,
        ok=200 <= answer.status_code < 300,
        content_type=answer.headers.get("content-type"),
        body=answer.text[:MAX_ANSWER_CHARS],
    )
