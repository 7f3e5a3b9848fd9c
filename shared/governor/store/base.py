"""The object-storage contract every backend implements.

A *generation* names one version of one key. It is an opaque string, never
reused for the same key, not even after a delete and re-create, so a
compare-and-swap on it cannot be fooled by an A-B-A sequence.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Final, Protocol, TypeAlias

import msgspec


class _Absent(Enum):
    """Precondition meaning "the key must not exist": a create-only write."""

    ABSENT = "absent"


ABSENT: Final = _Absent.ABSENT

Generation: TypeAlias = str
Precondition: TypeAlias = Generation | _Absent | None
"""`ABSENT`: create only. A generation: replace only that version. `None`: unconditional."""

DEFAULT_WRITE_TIMEOUT_S: Final = 30.0


class StoreError(Exception):
    """Base class of every error the store raises."""


class PreconditionFailed(StoreError):
    """The key exists (create-only) or holds another generation than the one given."""

    def __init__(self, key: str, expected: Precondition) -> None:
        wanted = "to be absent" if expected is ABSENT else f"at generation {expected}"
        super().__init__(f"object '{key}' was expected {wanted} but is not")
        self.key = key


class WriteContention(StoreError):
    """A write could not get through within the write timeout; safe to retry later."""

    def __init__(self, key: str, timeout_s: float) -> None:
        super().__init__(
            f"another governor write is in progress on '{key}' and this one did not get "
            f"through within {timeout_s:g} s (GOVERNOR_WRITE_TIMEOUT_S); nothing was "
            "changed, retry in a few seconds"
        )
        self.key = key
        self.timeout_s = timeout_s


class StoreConfigError(StoreError):
    """The store URL or the place it names cannot be used."""


class StoredObject(msgspec.Struct, frozen=True):
    data: bytes
    generation: Generation


class ObjectStore(Protocol):
    """Keyed bytes with conditional writes. See docs/storage.md."""

    url: str
    write_timeout_s: float

    def get(self, key: str) -> StoredObject | None:
        """The whole current object, or None if the key does not exist. Never waits on writers."""
        ...

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_generation_match: Precondition,
        timeout_s: float | None = None,
    ) -> Generation:
        """Write `data` if the precondition holds and return the new generation.

        Raises PreconditionFailed if it does not hold, WriteContention if the write
        could not get through within `timeout_s` (default: the store's write timeout).
        """
        ...

    def delete(self, key: str, *, if_generation_match: Generation | None = None) -> None:
        """Remove the key; a missing key is not an error.

        The generation check is enforced where the backend supports it; the governor's
        correctness never depends on it (emulators ignore it).
        """
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Keys that start with `prefix`, sorted."""
        ...


_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")


def validate_key(key: str) -> str:
    """Keys are slash-separated names of letters, digits, '.', '_' and '-'.

    Each segment starts with a letter or digit, which rules out '..', hidden files and
    the local store's own temporary and lock files.
    """
    if not _KEY.fullmatch(key) or len(key) > 512:
        raise ValueError(
            f"invalid object key {key!r}: use slash-separated segments of letters, digits, "
            "'.', '_' and '-', each starting with a letter or digit"
        )
    return key
