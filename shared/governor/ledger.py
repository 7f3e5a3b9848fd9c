"""What the governor remembers, as documents on the store, changed only through `update`.

    deliveries/<identity>.json             claim of a delivery with no record of its own
    repos/<repo_id>/state.json             release state, one per repository
    decisions/<repo_id>/<sha>.json         the evaluations of one SHA, and the claims of
                                           the verification deliveries about it
    runs/<repo_id>/<run>-<n>.json          a deploy run attempt: its claim, and whether its
                                           failure issue is being created
    reconcile/cursor.json                  where reconcile stopped, and what it asked
    global/freeze.json                     the freeze of every repository (`freeze --all`)

Each kind under its own top-level prefix, so a bucket lifecycle rule can expire one kind
(deliveries/ and runs/ after `retention_days`, decisions/ after `audit_retention_days`)
and never touch the release states.

Time is always passed in (`now`), so everything here is deterministic under test.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from governor.replay import FileChange, Replay
from governor.state import EmergencyFreeze, Lift, Lifted, ReleaseState, lift_recorded, new_state
from governor.store import LastRead, ObjectStore, PreconditionFailed, update
from governor.store.envelope import new_token

if TYPE_CHECKING:
    from governor.reconcile_cursor import ReconcileCursor

DEFAULT_LEASE: Final = timedelta(seconds=120)
"""Longer than a webhook is processed (GitHub gives up after 10 s), short enough to retry soon."""
MAX_EVALUATIONS_KEPT: Final = 50
_GUID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,99}")
_SHA = re.compile(r"[0-9a-f]{40}")


class _Doc(BaseModel):
    # Built on first use: a cold start builds only the models its event needs.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


# -- claims ----------------------------------------------------------------------------


class ClaimEntry(_Doc):
    """One claim: processing (lease until T) -> done (outcome). At most one live claimant."""

    guid: str
    """The GUID of the first delivery that claimed it."""
    event: str
    status: Literal["processing", "done"]
    owner: str
    lease_until: datetime
    attempts: int = 1
    outcome: dict[str, Any] | None = None
    updated_at: datetime


_CLAIM_FIELDS: Final = frozenset(ClaimEntry.model_fields)


class DeliveryRecord(ClaimEntry):
    """deliveries/<identity>.json: the claim of a delivery whose work has no record of its own."""

    schema_version: Literal[1] = 1
    identity: str | None = None
    """What the payload is about (`governor.events.identity`); the key is made from it."""


class RunRecord(_Doc):
    """runs/<run>-<attempt>.json: a deploy run's outcome, claimed and applied once."""

    schema_version: Literal[2] = 2
    claim: ClaimEntry
    issue_pending: bool = False
    """The failure issue (or comment) is being created: a takeover looks for it first."""


class ClaimStatus(StrEnum):
    CLAIMED = "claimed"
    """This caller owns the delivery now and must process it."""
    IN_PROGRESS = "in_progress"
    """Another instance holds a live lease on it."""
    DONE = "done"
    """Processed already; `outcome` is what was recorded."""


class Claim(msgspec.Struct, frozen=True):
    status: ClaimStatus
    owner: str
    lease_until: datetime
    outcome: dict[str, Any] | None = None
    takeover: bool = False
    """Claimed after another instance's lease expired: its work may be half done."""


class ClaimSite(msgspec.Struct, frozen=True):
    """Where a claim lives, so that finishing it can ride in a write the work needs anyway:
    a verification's claim sits in its SHA's decision record (done + evaluation: one
    write), a deploy outcome's in the run record, anything else in its own record."""

    key: str
    entry: Callable[[bytes | None], ClaimEntry | None]
    """The claim in the document (None: no claim yet)."""
    put: Callable[[bytes | None, ClaimEntry, Evaluation | None], bytes]
    """The document with this claim (and an evaluation to record, where it has them)."""


def delivery_key(identity: str) -> str:
    if not _GUID.fullmatch(identity):
        raise ValueError(f"delivery identity {identity!r} is not usable as a key")
    return f"deliveries/{identity}.json"


def state_key(repo_id: int) -> str:
    return f"repos/{int(repo_id)}/state.json"


def decision_key(repo_id: int, sha: str) -> str:
    if not _SHA.fullmatch(sha):
        raise ValueError(f"{sha!r} is not a full commit SHA")
    return f"decisions/{int(repo_id)}/{sha}.json"


def run_key(repo_id: int, run_id: int, attempt: int) -> str:
    return f"runs/{int(repo_id)}/{int(run_id)}-{int(attempt)}.json"


GLOBAL_FREEZE_KEY: Final = "global/freeze.json"


class GlobalFreeze(_Doc):
    """global/freeze.json: `governor freeze --all`, read by every evaluation and again
    right before every dispatch."""

    schema_version: Literal[1] = 1
    freeze: EmergencyFreeze | None = None
    version: int = 0
    last_lifted: Lifted | None = None
    """The last freeze of every repository lifted by hand (`freeze --all off`)."""


CLAIM_RETENTION: Final = timedelta(days=4)
"""Claims kept in a decision record: longer than GitHub's 3-day redelivery window."""


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
    replay: Replay | None = None
    """What the rules decided on, to decide it again (`governor simulate`); None in
    evaluations the gate's rules did not make (restored from a dispatch intent, a
    rollback) and in those recorded before replay data was kept."""

    def decides_as(self, other: Evaluation) -> bool:
        """Same outcome, reason, risk, detail and end: nothing new to record or tell."""
        return (self.outcome, self.reason, self.until, self.risk, self.detail) == (
            other.outcome,
            other.reason,
            other.until,
            other.risk,
            other.detail,
        )


class DecisionRecord(_Doc):
    schema_version: Literal[1] = 1
    repo_id: int
    repo: str
    sha: str
    evaluations: tuple[Evaluation, ...] = ()
    """The first evaluation and the most recent ones (at most 50 in all)."""
    total_evaluations: int = 0
    claims: dict[str, ClaimEntry] = Field(default_factory=dict)
    """Claims of the verification deliveries about this SHA (kept 4 days)."""
    policies: dict[str, str] = Field(default_factory=dict)
    """The policy texts the evaluations' replays name, by digest: each kept once."""
    changes: dict[str, tuple[FileChange, ...]] = Field(default_factory=dict)
    """The lists of changed files the evaluations' replays name, by digest."""

    @property
    def latest(self) -> Evaluation | None:
        return self.evaluations[-1] if self.evaluations else None

    def replay_of(self, evaluation: Evaluation) -> Replay | None:
        """The evaluation's replay with its policy texts and changed files (None: it has
        none)."""
        replay = evaluation.replay
        return None if replay is None else replay.with_contents(self.policies, self.changes)


def _append(record: DecisionRecord, evaluation: Evaluation) -> DecisionRecord:
    """`record` with `evaluation` kept; unchanged if it decided what the latest did. The
    policy texts and changed files of its replay move to the record, each kept once."""
    if record.latest is not None and record.latest.decides_as(evaluation):
        return record
    policies, changes = dict(record.policies), dict(record.changes)
    replay = evaluation.replay
    if replay is not None:
        policies.update(replay.policies)
        changes.update(replay.changes)
        evaluation = evaluation.model_copy(update={"replay": replay.bare()})
    kept = (*record.evaluations, evaluation)
    if len(kept) > MAX_EVALUATIONS_KEPT:
        kept = (kept[0], *kept[-(MAX_EVALUATIONS_KEPT - 1) :])
    replays = [e.replay for e in kept if e.replay is not None]
    named_policies = {d for r in replays for d in r.policy_digests()}
    named_changes = {d for r in replays for d in r.change_digests()}
    return record.model_copy(
        update={
            "evaluations": kept,
            "total_evaluations": record.total_evaluations + 1,
            "policies": {d: t for d, t in policies.items() if d in named_policies},
            "changes": {d: f for d, f in changes.items() if d in named_changes},
        }
    )


# -- the ledger ------------------------------------------------------------------------


class Ledger:
    """The governor's records on one store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    # claims

    def delivery_site(self, identity: str) -> ClaimSite:
        def entry(old: bytes | None) -> ClaimEntry | None:
            return None if old is None else DeliveryRecord.model_validate_json(old)

        def put(old: bytes | None, claim: ClaimEntry, _: Evaluation | None) -> bytes:
            record = DeliveryRecord(
                **claim.model_dump(include=set(_CLAIM_FIELDS)), identity=identity
            )
            return record.model_dump_json().encode()

        return ClaimSite(delivery_key(identity), entry, put)

    def decision_site(self, repo_id: int, repo: str, sha: str, identity: str) -> ClaimSite:
        def record_of(old: bytes | None) -> DecisionRecord:
            if old is None:
                return DecisionRecord(repo_id=repo_id, repo=repo, sha=sha)
            return DecisionRecord.model_validate_json(old)

        def entry(old: bytes | None) -> ClaimEntry | None:
            return record_of(old).claims.get(identity)

        def put(old: bytes | None, claim: ClaimEntry, evaluation: Evaluation | None) -> bytes:
            record = record_of(old)
            if evaluation is not None:
                record = _append(record, evaluation)
            since = claim.updated_at - CLAIM_RETENTION
            claims = {k: c for k, c in record.claims.items() if c.updated_at > since}
            claims[identity] = claim
            return record.model_copy(update={"claims": claims}).model_dump_json().encode()

        return ClaimSite(decision_key(repo_id, sha), entry, put)

    def run_site(self, repo_id: int, run_id: int, attempt: int) -> ClaimSite:
        def entry(old: bytes | None) -> ClaimEntry | None:
            return None if old is None else _run_record(old).claim

        def put(old: bytes | None, claim: ClaimEntry, _: Evaluation | None) -> bytes:
            record = RunRecord(claim=claim) if old is None else _run_record(old)
            return record.model_copy(update={"claim": claim}).model_dump_json().encode()

        return ClaimSite(run_key(repo_id, run_id, attempt), entry, put)

    def claim(
        self,
        site: ClaimSite,
        event: str,
        now: datetime,
        lease: timedelta = DEFAULT_LEASE,
        *,
        guid: str,
    ) -> Claim:
        """Claim the work at `site`: exactly one live claimant at a time.

        A delivery of the same fact under another GUID finds the claim and writes nothing.
        "Seen" is not enough: a claim whose claimant died (lease expired, still
        "processing") is taken over and the work redone.
        """
        me = new_token()
        mine = ClaimEntry(
            guid=guid,
            event=event,
            status="processing",
            owner=me,
            lease_until=now + lease,
            updated_at=now,
        )

        def claim(old: bytes | None) -> bytes:
            current = site.entry(old)
            if current is None:
                return site.put(old, mine, None)
            if current.status == "done" or current.lease_until > now:
                assert old is not None  # there is a claim, so there is a document
                return old
            return site.put(old, mine.model_copy(update={"attempts": current.attempts + 1}), None)

        record = site.entry(update(self.store, site.key, claim).data)
        assert record is not None
        if record.owner == me:
            return Claim(ClaimStatus.CLAIMED, me, record.lease_until, takeover=record.attempts > 1)
        if record.status == "done":
            return Claim(ClaimStatus.DONE, record.owner, record.lease_until, record.outcome)
        return Claim(ClaimStatus.IN_PROGRESS, record.owner, record.lease_until)

    def finish(
        self,
        site: ClaimSite,
        owner: str,
        outcome: dict[str, Any],
        now: datetime,
        evaluation: Evaluation | None = None,
    ) -> None:
        """Mark the claim done with the outcome duplicates are answered with, in one write
        with the evaluation where the site keeps them."""

        def finish(old: bytes | None) -> bytes:
            current = site.entry(old)
            if old is None or current is None:
                raise LookupError(f"{site.key}: nothing was claimed there")
            if current.status == "done" or current.owner != owner:
                return old  # taken over meanwhile: the new owner finishes it
            done = current.model_copy(
                update={"status": "done", "outcome": outcome, "updated_at": now}
            )
            return site.put(old, done, evaluation)

        update(self.store, site.key, finish)

    def release(self, site: ClaimSite, owner: str, now: datetime) -> None:
        """Give up a claim after a failure, so a redelivery can take it at once."""

        def release(old: bytes | None) -> bytes:
            current = site.entry(old)
            if old is None or current is None:
                raise LookupError(site.key)
            if current.status == "done" or current.owner != owner:
                return old
            released = current.model_copy(update={"lease_until": now, "updated_at": now})
            return site.put(old, released, None)

        with contextlib.suppress(LookupError):  # never claimed: nothing to give up
            update(self.store, site.key, release)

    def issue_pending(self, repo_id: int, run_id: int, attempt: int) -> bool:
        """Note that the failure issue of this run is about to be created; True if it was
        noted already (a previous claimant may have created it before it died)."""
        was = False

        def mark(old: bytes | None) -> bytes:
            nonlocal was
            if old is None:
                raise LookupError(f"run {run_id} attempt {attempt} was never claimed")
            record = _run_record(old)
            was = record.issue_pending
            if was:
                return old
            return record.model_copy(update={"issue_pending": True}).model_dump_json().encode()

        update(self.store, run_key(repo_id, run_id, attempt), mark)
        return was

    def claim_entry(self, site: ClaimSite) -> ClaimEntry | None:
        """The claim at `site` as stored now (None: never claimed)."""
        current = self.store.get(site.key)
        return site.entry(None if current is None else current.data)

    # retention

    def expire(
        self, now: datetime, *, retention: timedelta, audit_retention: timedelta, limit: int
    ) -> int:
        """Delete delivery claims and run records unchanged for `retention`, and decision
        records unchanged for `audit_retention`; at most `limit`. The release state and
        the cursor are never expired. Returns how many were deleted."""
        deleted = 0
        prefixes = ("deliveries/", "runs/", "decisions/")
        for key in [key for prefix in prefixes for key in self.store.list(prefix)]:
            if deleted >= limit:
                break
            keep = audit_retention if key.startswith("decisions/") else retention
            current = self.store.get(key)
            if current is None:
                continue
            changed = _last_change(key, current.data)
            if changed is None or now - changed < keep:
                continue
            with contextlib.suppress(PreconditionFailed):  # changed meanwhile: it stays
                self.store.delete(key, if_generation_match=current.generation)
                deleted += 1
        return deleted

    # reconcile's cursor

    def read_cursor(self) -> tuple[ReconcileCursor, LastRead]:
        """The cursor, and the read to pass to `update_cursor` (which then reads again only
        if another reconcile wrote meanwhile)."""
        # Imported here: only reconcile reads the cursor, a webhook's cold start does not.
        from governor.reconcile_cursor import CURSOR_KEY, ReconcileCursor

        current = self.store.get(CURSOR_KEY)
        if current is None:
            return ReconcileCursor(), LastRead(None)
        return ReconcileCursor.model_validate_json(current.data), LastRead(current)

    def update_cursor(
        self, fn: Callable[[ReconcileCursor], ReconcileCursor], last_read: LastRead | None = None
    ) -> ReconcileCursor:
        """Apply `fn` to the newest cursor (again on a conflict with another reconcile)."""
        from governor.reconcile_cursor import CURSOR_KEY, ReconcileCursor

        def apply(old: bytes | None) -> bytes:
            before = ReconcileCursor() if old is None else ReconcileCursor.model_validate_json(old)
            after = fn(before)
            if after == before and old is not None:
                return old
            return after.model_dump_json().encode()

        written = update(self.store, CURSOR_KEY, apply, last_read=last_read)
        return ReconcileCursor.model_validate_json(written.data)

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

    # the freeze of every repository

    def read_global_freeze(self) -> EmergencyFreeze | None:
        return self.read_global_record().freeze

    def read_global_record(self) -> GlobalFreeze:
        """`global/freeze.json`: the freeze of every repository and its last lift."""
        current = self.store.get(GLOBAL_FREEZE_KEY)
        return GlobalFreeze() if current is None else GlobalFreeze.model_validate_json(current.data)

    def set_global_freeze(
        self, freeze: EmergencyFreeze | None, *, lift: Lift | None = None
    ) -> EmergencyFreeze | None:
        """Set (or lift, with None) the freeze of every repository; returns the one before.
        Lifting one with `lift` keeps who lifted it, when and why (`last_lifted`)."""
        before: list[EmergencyFreeze | None] = [None]

        def apply(old: bytes | None) -> bytes:
            record = GlobalFreeze() if old is None else GlobalFreeze.model_validate_json(old)
            before[0] = record.freeze
            if old is not None and record.freeze == freeze:
                return old
            update: dict[str, Any] = {"freeze": freeze, "version": record.version + 1}
            if freeze is None and record.freeze is not None and lift is not None:
                update["last_lifted"] = Lifted.of(record.freeze, lift)
            return record.model_copy(update=update).model_dump_json().encode()

        update(self.store, GLOBAL_FREEZE_KEY, apply)
        return before[0]

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
        if current is None:  # written before records had their own prefix: still readable
            current = self.store.get(f"repos/{int(repo_id)}/decisions/{sha}.json")
        return None if current is None else DecisionRecord.model_validate_json(current.data)


class Lifting(Ledger):
    """The ledger of an operator lifting a freeze or a declared degradation (`governor
    freeze ... off`, `governor degraded ... off`): whatever its writes lift (a
    repository's freeze or degradation, in a transition; the freeze of every repository,
    in `set_global_freeze(None)`) keeps `lift`, who lifted it, when and why, in that same
    write (`state.lift_recorded`). Writes that lift nothing are as `Ledger`'s."""

    def __init__(self, store: ObjectStore, lift: Lift) -> None:
        super().__init__(store)
        self.lift = lift

    def transition(
        self, repo_id: int, repo: str, fn: Callable[[ReleaseState], ReleaseState]
    ) -> ReleaseState:
        return super().transition(repo_id, repo, lambda s: lift_recorded(s, fn(s), self.lift))

    def set_global_freeze(
        self, freeze: EmergencyFreeze | None, *, lift: Lift | None = None
    ) -> EmergencyFreeze | None:
        return super().set_global_freeze(freeze, lift=lift or self.lift)


def _last_change(key: str, data: bytes) -> datetime | None:
    """When a record last changed, from its own timestamps (None: unreadable, kept)."""
    try:
        if key.startswith("deliveries/"):
            return DeliveryRecord.model_validate_json(data).updated_at
        if key.startswith("runs/"):
            return _run_record(data).claim.updated_at
        record = DecisionRecord.model_validate_json(data)
    except ValueError:
        return None
    moments = [e.at for e in record.evaluations] + [c.updated_at for c in record.claims.values()]
    return max(moments) if moments else None


def _run_record(data: bytes) -> RunRecord:
    """A run record; a marker written before schema 2 (a bare summary) reads as done."""
    raw = json.loads(data)
    if "claim" in raw:
        return RunRecord.model_validate(raw)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    done = ClaimEntry(
        guid="before-schema-2",
        event="workflow_run",
        status="done",
        owner="",
        lease_until=epoch,
        outcome=raw,
        updated_at=epoch,
    )
    return RunRecord(claim=done)
