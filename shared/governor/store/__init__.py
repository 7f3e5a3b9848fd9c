"""Object storage: one contract, three backends chosen by URL.

    file:///var/lib/governor   LocalStore  (fcntl lock, atomic rename)
    gs://bucket/prefix         GcsStore    (generation-match uploads)
    s3://bucket/prefix         S3Store     (If-None-Match / If-Match)

Backends import their client library only when opened, to keep cold starts small.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from governor.store.base import (
    ABSENT,
    DEFAULT_WRITE_TIMEOUT_S,
    Generation,
    ObjectStore,
    Precondition,
    PreconditionFailed,
    StoreConfigError,
    StoredObject,
    StoreError,
    WriteContention,
    validate_key,
)
from governor.store.update import LastRead, UpdateResult, update

__all__ = [
    "ABSENT",
    "DEFAULT_WRITE_TIMEOUT_S",
    "Generation",
    "LastRead",
    "ObjectStore",
    "Precondition",
    "PreconditionFailed",
    "StoreConfigError",
    "StoreError",
    "StoredObject",
    "UpdateResult",
    "WriteContention",
    "credentials_identity",
    "open_store",
    "update",
    "validate_key",
]

_URL_FORMS = "file:///absolute/path, gs://bucket/prefix or s3://bucket/prefix"


def open_store(url: str, *, write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S) -> ObjectStore:
    """Open the store a GOVERNOR_STORE_URL names."""
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise StoreConfigError(f"store URL '{url}' must not have a query or fragment")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise StoreConfigError(f"store URL '{url}' must be file:///absolute/path")
        from governor.store.local import LocalStore

        return LocalStore(Path(unquote(parts.path)), write_timeout_s=write_timeout_s)
    if parts.scheme in ("gs", "s3"):
        if not parts.netloc:
            raise StoreConfigError(f"store URL '{url}' names no bucket; use {_URL_FORMS}")
        prefix = parts.path.strip("/")
        if prefix:
            try:
                validate_key(prefix)
            except ValueError as exc:
                raise StoreConfigError(f"store URL '{url}' has an invalid prefix: {exc}") from None
        if parts.scheme == "gs":
            from governor.store.gcs import GcsStore

            return GcsStore(parts.netloc, prefix, write_timeout_s=write_timeout_s)
        from governor.store.s3 import S3Store

        return S3Store(parts.netloc, prefix, write_timeout_s=write_timeout_s)
    raise StoreConfigError(f"unsupported store URL '{url}': use {_URL_FORMS}")


def credentials_identity(store: ObjectStore) -> str | None:
    """Who the store's credentials belong to, where the backend can tell (else None)."""
    identity = getattr(store, "credentials_identity", None)
    return identity() if callable(identity) else None
