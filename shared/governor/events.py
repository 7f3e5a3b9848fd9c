"""Webhook deliveries as values: signature check and parsing. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Final

MAX_BODY_BYTES: Final = 25 * 1024 * 1024
"""GitHub caps webhook payloads at 25 MB; anything larger is not from GitHub."""


class InvalidDelivery(Exception):
    """A delivery that is rejected before anything is stored; carries the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def signature_for(secret: bytes, body: bytes) -> str:
    """The value GitHub sends in X-Hub-Signature-256 for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> None:
    """Raise InvalidDelivery(401) unless `header` is the HMAC-SHA256 of `body` under `secret`."""
    if not header:
        raise InvalidDelivery(401, "missing X-Hub-Signature-256 header: is the webhook secret set?")
    if not hmac.compare_digest(signature_for(secret, body), header):
        raise InvalidDelivery(401, "X-Hub-Signature-256 does not match the body and webhook secret")


@dataclass(frozen=True, slots=True)
class Delivery:
    guid: str
    event: str
    payload: dict[str, Any]


def parse_delivery(headers: dict[str, str], body: bytes, secret: bytes) -> Delivery:
    """Check size, signature, headers and JSON, in that order; the signature before parsing."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidDelivery(413, f"body of {len(body)} bytes is over GitHub's 25 MB limit")
    verify_signature(secret, body, headers.get("x-hub-signature-256"))
    guid = headers.get("x-github-delivery", "").strip()
    event = headers.get("x-github-event", "").strip()
    if not guid or not event:
        raise InvalidDelivery(400, "missing X-GitHub-Delivery or X-GitHub-Event header")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidDelivery(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidDelivery(400, "body is JSON but not an object")
    return Delivery(guid=guid, event=event, payload=payload)
