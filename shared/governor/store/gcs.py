"""Google Cloud Storage store (`gs://bucket/prefix`).

Every conditional write is an upload with `ifGenerationMatch` (0 for create-only);
GCS answers 412 when it does not hold. 429, 5xx and connection errors are retried by
google-cloud-storage's own jittered exponential backoff, bounded by the write timeout.
GCS generations are never reused for a key, so they serve as ours unchanged. Each write
carries a token in its metadata: a retried write whose first answer was lost meets its
own write and gets 412, and the token tells it that it succeeded.
Set STORAGE_EMULATOR_HOST to use an emulator (fake-gcs-server in the tests).

Under a request deadline (`governor.deadline`) each call's timeout and its retries end
with the deadline too: DeadlineExceeded when it, not the write timeout, ran out.
"""

from __future__ import annotations

import os
from typing import Any, Final

from google.api_core import exceptions as google_errors
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from governor import deadline
from governor.store import envelope
from governor.store.base import (
    ABSENT,
    DEFAULT_WRITE_TIMEOUT_S,
    Generation,
    Precondition,
    PreconditionFailed,
    StoreConfigError,
    StoredObject,
    WriteContention,
    validate_key,
)

OWNER_METADATA: Final = "governor-write"
"""Object metadata key of the token each write carries."""


def _client() -> Any:
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project="emulator",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": emulator},
        )
    return storage.Client()


class GcsStore:
    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S,
        client: Any = None,
    ) -> None:
        self.url = f"gs://{bucket}/{prefix}".rstrip("/")
        self.write_timeout_s = write_timeout_s
        self._prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self._client = client or _client()
        self._bucket = self._client.bucket(bucket)

    def credentials_identity(self) -> str | None:
        """The service account the client writes as (None for user or anonymous credentials)."""
        credentials = getattr(self._client, "_credentials", None)
        email = getattr(credentials, "service_account_email", None)
        return email if isinstance(email, str) and "@" in email else None

    def get(self, key: str) -> StoredObject | None:
        blob = self._bucket.blob(self._name(key))
        left = deadline.remaining(grace=True)  # reads serve writes: the same grace
        bounds: dict[str, Any] = {"retry": DEFAULT_RETRY}
        if left is not None:
            if left <= 0:
                raise deadline.exceeded(f"before reading '{key}'")
            bounds = {"retry": DEFAULT_RETRY.with_timeout(left), "timeout": left}
        try:
            data = blob.download_as_bytes(**bounds)
        except google_errors.NotFound as exc:
            self._raise_if_bucket_missing(exc)
            return None
        except Exception:
            if deadline.remaining(grace=True) == 0:
                raise deadline.exceeded(f"reading '{key}'") from None
            raise
        return StoredObject(data=data, generation=str(blob.generation))

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_generation_match: Precondition,
        timeout_s: float | None = None,
    ) -> Generation:
        timeout = self.write_timeout_s if timeout_s is None else timeout_s
        limit = deadline.limit(timeout, grace=True)
        left = limit.remaining()
        if left <= 0:
            raise _gave_up(key, timeout, by_deadline=limit.by_deadline)
        per_call = {"timeout": left} if limit.by_deadline else {}
        blob = self._bucket.blob(self._name(key))
        token = envelope.new_token()
        blob.metadata = {OWNER_METADATA: token}
        try:
            blob.upload_from_string(
                data,
                content_type="application/octet-stream",
                if_generation_match=_gcs_precondition(if_generation_match),
                retry=DEFAULT_RETRY.with_timeout(left),
                **per_call,
            )
        except google_errors.PreconditionFailed:
            own = self._own_write(key, token)
            if own is not None:
                return own
            raise PreconditionFailed(key, if_generation_match) from None
        except google_errors.NotFound as exc:
            self._raise_if_bucket_missing(exc)
            raise
        except google_errors.RetryError:
            raise _gave_up(key, timeout, by_deadline=limit.by_deadline) from None
        except Exception:
            if limit.by_deadline and limit.remaining() <= 0:  # the call's timeout cut it
                raise _gave_up(key, timeout, by_deadline=True) from None
            raise
        return str(blob.generation)

    def delete(self, key: str, *, if_generation_match: Generation | None = None) -> None:
        blob = self._bucket.blob(self._name(key))
        try:
            blob.delete(
                if_generation_match=None
                if if_generation_match is None
                else int(if_generation_match),
                retry=DEFAULT_RETRY,
            )
        except google_errors.NotFound:
            pass
        except google_errors.PreconditionFailed:
            raise PreconditionFailed(key, if_generation_match) from None

    def list(self, prefix: str = "") -> list[str]:
        blobs = self._client.list_blobs(self._bucket, prefix=self._prefix + prefix)
        return sorted(blob.name[len(self._prefix) :] for blob in blobs)

    def _own_write(self, key: str, token: str) -> Generation | None:
        """A 412 after the client retried a write whose answer was lost meets that very
        write: the object carries our token, and the write succeeded."""
        current = self._bucket.get_blob(self._name(key), retry=DEFAULT_RETRY)
        if current is not None and (current.metadata or {}).get(OWNER_METADATA) == token:
            return str(current.generation)
        return None

    def _name(self, key: str) -> str:
        return self._prefix + validate_key(key)

    def _raise_if_bucket_missing(self, exc: google_errors.NotFound) -> None:
        if "bucket" not in str(exc).lower():
            return
        try:
            missing = not self._bucket.exists()
        except google_errors.Forbidden:  # objectUser may not read bucket metadata
            missing = True
        if missing:
            raise StoreConfigError(
                f"GCS bucket '{self._bucket.name}' does not exist or this identity cannot "
                "see it; create it (infra/) or fix GOVERNOR_STORE_URL"
            ) from exc


def _gave_up(key: str, timeout: float, *, by_deadline: bool) -> Exception:
    if by_deadline:
        return deadline.exceeded(f"writing '{key}'")
    return WriteContention(key, timeout)


def _gcs_precondition(expected: Precondition) -> int | None:
    if expected is None:
        return None
    if expected is ABSENT:
        return 0
    return int(expected)
