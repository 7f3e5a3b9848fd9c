"""What the governor remembers, as documents on the store, changed only through `update`.

    deliveries/<identity>.json             delivery claim: processing (lease) -> done (outcome)
    repos/<repo_id>/state.json             release state, one per repository
    repos/<repo_id>/decisions/<sha>.json   every evaluation of one SHA
    repos/<repo_id>/runs/<run>-<n>.json    a deploy run whose outcome was processed (create-only)

Time is always passed in (`now`), so everything here is deterministic under test.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from governor.state import ReleaseState, new_state
from governor.store import ABSENT, ObjectStore, PreconditionFailed, update
from governor.store.envelope import new_token

DEFAULT_LEASE: Final = timedelta(seconds=120)
"""Longer than a webhook is processed (GitHub gives up after 10 s), short enough to retry soon."""
MAX_EVALUATIONS_KEPT: Final = 50
_GUID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,99}")
_SHA = re.compile(r"[0-9a-f]{40}")


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- delivery claims -------------------------------------------------------------------


class DeliveryRecord(_Doc):
    schema_version: Literal[1] = 1
    guid: str
    """The GUID of the first delivery that claimed it."""
    identity: str | None = None
    """What the payload is about (`governor.events.identity`); the key is made from it."""
    event: str
    status: Literal["processing", "done"]
    owner: str
    lease_until: datetime
    attempts: int = 1
    outcome: dict[str, Any] | None = None
    updated_at: datetime


class ClaimStatus(StrEnum):
    CLAIMED = "claimed"
    """This caller owns the delivery now and must process it."""
    IN_PROGRESS = "in_progress"
    """Another instance holds a live lease on it."""
    DONE = "done"
    """Processed already; `outcome` is what was recorded."""


@dataclass(frozen=True, slots=True)
class Claim:
    status: ClaimStatus
    owner: str
    lease_until: datetime
    outcome: dict[str, Any] | None = None
    takeover: bool = False
    """Claimed after another instance's lease expired: its work may be half done."""


def delivery_key(identity: str) -> str:
    if not _GUID.fullmatch(identity):
        raise ValueError(f"delivery identity {identity!r} is not usable as a key")
    return f"deliveries/{identity}.json"


def state_key(repo_id: int) -> str:
    return f"repos/{int(repo_id)}/state.json"


def decision_key(repo_id: int, sha: str) -> str:
    if not _SHA.fullmatch(sha):
        raise ValueError(f"{sha!r} is not a full commit SHA")
    return f"repos/{int(repo_id)}/decisions/{sha}.json"


def run_key(repo_id: int, run_id: int, attempt: int) -> str:
    return f"repos/{int(repo_id)}/runs/{int(run_id)}-{int(attempt)}.json"


# -- decision records ------------------------------------------------------------------


class Evaluation(_Doc):
    at: datetime
    delivery: str | None
    trigger: str
    outcome: str
    reason: str
    risk: str | None
    detail: str
    until: datetime | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)


class DecisionRecord(_Doc):
    schema_version: Literal[1] = 1
    repo_id: int
    repo: str
    sha: str
    evaluations: tuple[Evaluation, ...] = ()
    """The first evaluation and the most recent ones (at most 50 in all)."""
    total_evaluations: int = 0

    @property
    def latest(self) -> Evaluation | None:
        return self.evaluations[-1] if self.evaluations else None


def _append(record: DecisionRecord, evaluation: Evaluation) -> DecisionRecord:
    kept = (*record.evaluations, evaluation)
    if len(kept) > MAX_EVALUATIONS_KEPT:
        kept = (kept[0], *kept[-(MAX_EVALUATIONS_KEPT - 1) :])
    return record.model_copy(
        update={"evaluations": kept, "total_evaluations": record.total_evaluations + 1}
    )


# -- the ledger ------------------------------------------------------------------------


class Ledger:
    """The governor's records on one store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    # deliveries

    def claim_delivery(
        self,
        identity: str,
        event: str,
        now: datetime,
        lease: timedelta = DEFAULT_LEASE,
        *,
        guid: str | None = None,
    ) -> Claim:
        """Claim what a delivery is about for processing: exactly one live claimant at a time.

        The claim is keyed by the payload's identity, so a delivery of the same fact under
        another GUID finds it and writes nothing. "Seen" is not enough: a delivery whose
        claimant died (lease expired, still "processing") is taken over and redone.
        """
        me = new_token()
        mine = DeliveryRecord(
            guid=guid or identity,
            identity=identity,
            event=event,
            status="processing",
            owner=me,
            lease_until=now + lease,
            updated_at=now,
        )

        def claim(old: bytes | None) -> bytes:
            if old is None:
                return mine.model_dump_json().encode()
            current = DeliveryRecord.model_validate_json(old)
            if current.status == "done" or current.lease_until > now:
                return old
            takeover = mine.model_copy(update={"attempts": current.attempts + 1})
            return takeover.model_dump_json().encode()

        result = update(self.store, delivery_key(identity), claim)
        record = DeliveryRecord.model_validate_json(result.data)
        if record.owner == me:
            return Claim(ClaimStatus.CLAIMED, me, record.lease_until, takeover=record.attempts > 1)
        if record.status == "done":
            return Claim(ClaimStatus.DONE, record.owner, record.lease_until, record.outcome)
        return Claim(ClaimStatus.IN_PROGRESS, record.owner, record.lease_until)

    def finish_delivery(self, guid: str, outcome: dict[str, Any], now: datetime) -> None:
        """Mark a delivery done with the outcome later duplicates are answered with."""

        def finish(old: bytes | None) -> bytes:
            if old is None:
                raise LookupError(f"delivery {guid} was never claimed")
            current = DeliveryRecord.model_validate_json(old)
            if current.status == "done":
                return old
            done = current.model_copy(
                update={"status": "done", "outcome": outcome, "updated_at": now}
            )
            return done.model_dump_json().encode()

        update(self.store, delivery_key(guid), finish)

    def release_delivery(self, guid: str, owner: str, now: datetime) -> None:
        """Give up a claim after a failure, so a redelivery can take it at once."""

        def release(old: bytes | None) -> bytes:
            if old is None:
                raise LookupError(guid)
            current = DeliveryRecord.model_validate_json(old)
            if current.status == "done" or current.owner != owner:
                return old
            return (
                current.model_copy(update={"lease_until": now, "updated_at": now})
                .model_dump_json()
                .encode()
            )

        with contextlib.suppress(LookupError):  # never claimed or already removed: nothing to do
            update(self.store, delivery_key(guid), release)

    # release state

    def read_state(self, repo_id: int, repo: str) -> ReleaseState:
        current = self.store.get(state_key(repo_id))
        if current is None:
            return new_state(repo_id, repo)
        return ReleaseState.model_validate_json(current.data)

    def transition(
        self, repo_id: int, repo: str, fn: Callable[[ReleaseState], ReleaseState]
    ) -> ReleaseState:
        """Apply a pure transition atomically; on a conflict it re-runs on the newer state."""

        def apply(old: bytes | None) -> bytes:
            before = (
                new_state(repo_id, repo) if old is None else ReleaseState.model_validate_json(old)
            )
            after = fn(before)
            if after == before and old is not None:
                return old
            if after.repo != repo:
                after = after.model_copy(update={"repo": repo})  # renamed since last seen
            return after.model_dump_json().encode()

        result = update(self.store, state_key(repo_id), apply)
        return ReleaseState.model_validate_json(result.data)

    # decisions

    def record_evaluation(
        self, repo_id: int, repo: str, sha: str, evaluation: Evaluation
    ) -> DecisionRecord:
        def append(old: bytes | None) -> bytes:
            record = (
                DecisionRecord(repo_id=repo_id, repo=repo, sha=sha)
                if old is None
                else DecisionRecord.model_validate_json(old)
            )
            return _append(record, evaluation).model_dump_json().encode()

        result = update(self.store, decision_key(repo_id, sha), append)
        return DecisionRecord.model_validate_json(result.data)

    def read_decision(self, repo_id: int, sha: str) -> DecisionRecord | None:
        current = self.store.get(decision_key(repo_id, sha))
        return None if current is None else DecisionRecord.model_validate_json(current.data)

    # deploy runs

    def mark_run_processed(
        self, repo_id: int, run_id: int, attempt: int, summary: dict[str, Any]
    ) -> bool:
        """True for the one caller that records this run attempt first; False for the rest."""
        try:
            self.store.put(
                run_key(repo_id, run_id, attempt),
                json.dumps(summary, sort_keys=True, default=str).encode(),
                if_generation_match=ABSENT,
            )
        except PreconditionFailed:
            return False
        return True
