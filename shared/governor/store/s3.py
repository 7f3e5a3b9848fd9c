"""S3 and S3-compatible store (`s3://bucket/prefix`).

Create-only is `PutObject` with `If-None-Match: *`, replace is `If-Match: <etag>`; S3
answers 412 when it does not hold. The ETag serves as the generation; because an ETag
is a hash of the content, every object carries a fresh nonce in its header
(see envelope.py) so a generation is never reused; the nonce also tells a retried write
whose first answer was lost, and that then meets its own write (412), that it succeeded.
409 ConditionalRequestConflict
(another conditional write in flight) is retried with jittered backoff within the
write timeout; 5xx and throttling are retried by botocore ("standard" mode).
The endpoint comes from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (MinIO, moto in the
tests), as boto3 resolves it.

The identity `governor approve` and the other writing commands record is STS
GetCallerIdentity's ARN, asked at STS's own endpoint as boto3 resolves it
(AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, the config file's, else AWS's regional STS
endpoint), never at S3's. Only for an S3-compatible service at a custom endpoint with no
STS endpoint configured (MinIO, Ceph, ...) is STS asked at that endpoint: its keys mean
nothing to AWS and are not sent there; a service without STS answers an error and the
identity is unknown (None).
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_before_delay,
    wait_random_exponential,
)

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

_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=5,
    read_timeout=30,
)


_STS_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 2},
    connect_timeout=3,
    read_timeout=10,
)
"""Best effort, asked once per command: an STS that cannot be reached is not waited for."""
AWS_DOMAINS: Final = ("amazonaws.com", "amazonaws.com.cn", "api.aws")
"""The domains of AWS's own endpoints (S3, STS), in every partition boto3 defaults to."""


def _on_aws(endpoint_url: str | None) -> bool:
    host = (urlsplit(endpoint_url).hostname or "") if endpoint_url else ""
    return any(host == domain or host.endswith(f".{domain}") for domain in AWS_DOMAINS)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _is_conditional_conflict(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and _code(exc) == "ConditionalRequestConflict"


def _gave_up(key: str, timeout: float, *, by_deadline: bool) -> Exception:
    if by_deadline:
        return deadline.exceeded(f"writing '{key}'")
    return WriteContention(key, timeout)


class S3Store:
    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S,
        client: Any = None,
    ) -> None:
        self.url = f"s3://{bucket}/{prefix}".rstrip("/")
        self.write_timeout_s = write_timeout_s
        self._bucket = bucket
        self._prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self._client = client or boto3.client("s3", config=_CLIENT_CONFIG)

    def credentials_identity(self) -> str | None:
        """The ARN the credentials belong to (STS GetCallerIdentity); None if STS says no."""
        try:
            arn = self.sts_client().get_caller_identity().get("Arn")
        except Exception:  # best effort: the record then says the identity is unknown
            return None
        return arn if isinstance(arn, str) else None

    def sts_client(self) -> Any:
        """STS at its own endpoint (see the module's docstring), in the S3 client's region;
        at S3's endpoint only when that is a custom one and STS has none configured."""
        region = self._client.meta.region_name
        sts = boto3.client("sts", region_name=region, config=_STS_CONFIG)
        s3_endpoint = self._client.meta.endpoint_url
        if _on_aws(sts.meta.endpoint_url) and not _on_aws(s3_endpoint):
            return boto3.client(
                "sts", endpoint_url=s3_endpoint, region_name=region, config=_STS_CONFIG
            )
        return sts

    def get(self, key: str) -> StoredObject | None:
        name = self._name(key)
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=name)
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._translate(exc) from exc
        _nonce, data = envelope.unwrap(response["Body"].read(), where=f"{self.url}/{key}")
        return StoredObject(data=data, generation=response["ETag"])

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
        nonce = envelope.new_token()
        request: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": self._name(key),
            "Body": envelope.wrap(nonce, data),
            "ContentType": "application/octet-stream",
        }
        if if_generation_match is ABSENT:
            request["IfNoneMatch"] = "*"
        elif if_generation_match is not None:
            request["IfMatch"] = if_generation_match
        retrying = Retrying(
            retry=retry_if_exception(_is_conditional_conflict),
            wait=wait_random_exponential(multiplier=0.05, max=1),
            stop=stop_before_delay(left),  # no pause that would end past the timeout
        )
        try:
            response = retrying(self._client.put_object, **request)
        except RetryError:
            raise _gave_up(key, timeout, by_deadline=limit.by_deadline) from None
        except ClientError as exc:
            # If-Match on a key that no longer exists answers 404: the version is gone.
            if _code(exc) in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                own = self._own_write(key, nonce)
                if own is not None:
                    return own
                raise PreconditionFailed(key, if_generation_match) from None
            raise self._translate(exc) from exc
        return str(response["ETag"])

    def _own_write(self, key: str, nonce: str) -> Generation | None:
        """A 412 after botocore retried a write whose answer was lost meets that very
        write: the object carries our nonce, and the write succeeded."""
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=self._name(key))
        except ClientError:
            return None
        stored, _data = envelope.unwrap(response["Body"].read(), where=f"{self.url}/{key}")
        return str(response["ETag"]) if stored == nonce else None

    def delete(self, key: str, *, if_generation_match: Generation | None = None) -> None:
        request: dict[str, Any] = {"Bucket": self._bucket, "Key": self._name(key)}
        if if_generation_match is not None:
            request["IfMatch"] = if_generation_match
        try:
            self._client.delete_object(**request)
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return
            if _code(exc) in ("PreconditionFailed", "412"):
                raise PreconditionFailed(key, if_generation_match) from None
            raise self._translate(exc) from exc

    def list(self, prefix: str = "") -> list[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        keys: list[str] = []
        try:
            for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix + prefix):
                keys.extend(item["Key"][len(self._prefix) :] for item in page.get("Contents", []))
        except ClientError as exc:
            raise self._translate(exc) from exc
        return sorted(keys)

    def _name(self, key: str) -> str:
        return self._prefix + validate_key(key)

    def _translate(self, exc: ClientError) -> Exception:
        if _code(exc) == "NoSuchBucket":
            return StoreConfigError(
                f"S3 bucket '{self._bucket}' does not exist; create it or fix GOVERNOR_STORE_URL"
            )
        error: Exception = exc
        return error
