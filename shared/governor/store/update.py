"""The read-modify-write loop every change of shared state goes through.

Under a request deadline (`governor.deadline`) the loop, its pauses and the backend's
waits end with it: DeadlineExceeded instead of WriteContention when the deadline, not
the write timeout, is what ran out. Once the request has been cut, its writes on the
way out (the claim's release) get the deadline's short grace.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Final

import msgspec

from governor import deadline
from governor.store.base import (
    ABSENT,
    Generation,
    ObjectStore,
    PreconditionFailed,
    StoredObject,
    WriteContention,
)

_BACKOFF_FIRST_S: Final = 0.002
_BACKOFF_MAX_S: Final = 0.25


class UpdateResult(msgspec.Struct, frozen=True):
    data: bytes
    generation: Generation
    written: bool
    """False when `fn` returned the bytes already stored, so nothing was written."""
    conflicts: int
    """How many times another writer wrote first, so the conditional write failed and `fn`
    ran again on its result (on every backend alike)."""


class LastRead(msgspec.Struct, frozen=True):
    """What the caller read of the key (None: absent): `update` starts from it instead of
    reading again, and reads only if another writer wrote since."""

    current: StoredObject | None


def update(
    store: ObjectStore,
    key: str,
    fn: Callable[[bytes | None], bytes],
    *,
    timeout_s: float | None = None,
    last_read: LastRead | None = None,
) -> UpdateResult:
    """Apply `fn` to the current bytes of `key` (None if absent) and store the result.

    `fn` must be pure: on a conflict it is applied again to the newer bytes. Returning
    the current bytes unchanged writes nothing. Gives up with WriteContention when it
    cannot get through within `timeout_s` (default: the store's write timeout), with
    DeadlineExceeded when the request's deadline comes first.
    """
    timeout = store.write_timeout_s if timeout_s is None else timeout_s
    limit = deadline.limit(timeout, grace=True)

    def give_up() -> Exception:
        if limit.by_deadline:
            return deadline.exceeded(f"writing '{key}'")
        return WriteContention(key, timeout)

    if limit.remaining() <= 0:
        raise give_up()
    conflicts = 0
    pause = _BACKOFF_FIRST_S
    while True:
        if last_read is not None:  # the first attempt, against what the caller read
            current, last_read = last_read.current, None
        else:
            current = store.get(key)
        old = None if current is None else current.data
        new = fn(old)
        if current is not None and new == current.data:
            return UpdateResult(
                current.data, current.generation, written=False, conflicts=conflicts
            )
        remaining = limit.remaining()
        if remaining <= 0:
            raise give_up()
        try:
            generation = store.put(
                key,
                new,
                if_generation_match=ABSENT if current is None else current.generation,
                timeout_s=remaining,
            )
        except PreconditionFailed:
            conflicts += 1
        except WriteContention:
            raise give_up() from None
        else:
            return UpdateResult(new, generation, written=True, conflicts=conflicts)
        remaining = limit.remaining()
        if remaining <= 0:
            raise give_up()
        time.sleep(min(remaining, random.uniform(0, pause)))
        pause = min(_BACKOFF_MAX_S, pause * 2)
