"""A one-line header that travels with an object's bytes.

The local store keeps the generation in it, so a single rename publishes data and
generation together. The S3 store puts a fresh nonce in it, because an S3 ETag is a
hash of the content: without the nonce, writing the same bytes after a delete would
bring back an old ETag and let a stale compare-and-swap through.
"""

from __future__ import annotations

import secrets
from typing import Final

MAGIC: Final = b"governor-object/1 "


def new_token() -> str:
    """A 128-bit random token: never repeats in practice, so never reused as a generation."""
    return secrets.token_hex(16)


def wrap(token: str, data: bytes) -> bytes:
    return MAGIC + token.encode("ascii") + b"\n" + data


def unwrap(raw: bytes, *, where: str) -> tuple[str, bytes]:
    """Split stored bytes into (token, data); raise ValueError naming `where` if malformed."""
    header, newline, data = raw.partition(b"\n")
    if not newline or not header.startswith(MAGIC):
        raise ValueError(
            f"{where} is not a governor object (missing header); was it written by hand?"
        )
    return header[len(MAGIC) :].decode("ascii"), data
