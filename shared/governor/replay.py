"""What `gate.judge` decided on, kept with an evaluation so it can be decided again. Pure.

The verification flow decides inside the conditional write, on the state being replaced
(`flows/verification.py`). Its evaluation keeps a `Replay`: the rules version, both
policies as the raw text read (so replaying parses them again, the real code path), the
comparisons and the other facts, and the release state judge decided on in the write that
committed. `governor simulate` runs `judge(facts_of(replay), state_of(replay))` and checks
that it gives the stored decision and inputs.

Only what judge reads is kept: of the compares, the changed files of the change itself
(against production, or the SHA's own change before the first deploy; the other compares
are read for their ancestry alone); of the release state, what decides (production, the
dispatches, this SHA's failure and approvals, the freeze and the declared degradation).
Policy texts and lists of changed files are kept by content digest: an evaluation usually
has one text for both policies, and a decision record keeps each text and each file list
once for all its evaluations (`ledger.DecisionRecord.policies` and `.changes`): its
evaluations mostly share them (production moves rarely).

Where an evaluation is not the rules' verdict as judged, `override` says so: the rules
allowed the SHA, and at dispatch an operator's freeze (read again right before it) or
GitHub's refusal held it. The rules' part is still replayed exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from governor.decision import RULES_VERSION, Decision
from governor.gate import Facts, Verdict, judge
from governor.policy import parse_policy
from governor.risk import ChangedFile, Comparison
from governor.state import EmergencyFreeze, ReleaseState

__all__ = [
    "RULES_VERSION",
    "Compared",
    "Difference",
    "FileChange",
    "Judged",
    "Override",
    "Replay",
    "capture",
    "differences",
    "digest",
    "facts_of",
    "judged_of",
    "state_of",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class FileChange(_Model):
    """One changed file, as `risk.ChangedFile` holds it."""

    filename: str
    status: str = "modified"
    previous_filename: str | None = None


class Compared(_Model):
    """GitHub's compare BASE...SHA, as `risk.Comparison` holds it."""

    status: str
    ahead_by: int
    behind_by: int
    complete: bool
    files: str | None = None
    """The digest of its changed files in `Replay.changes`; None: not kept, judge does not
    read them (only the change it assesses keeps its files)."""


class Judged(_Model):
    """A decision as the record keeps it."""

    outcome: str
    reason: str
    risk: str | None
    detail: str
    until: datetime | None = None


class Override(_Model):
    """The rules' verdict was replaced at dispatch."""

    at_dispatch: Literal["frozen", "refused"]
    """`frozen`: an operator's freeze read right before the dispatch; `refused`: GitHub
    refused the dispatch (held `deploy_not_configured`)."""
    judged: Judged
    """What the rules decided (the evaluation records what was done)."""


class Replay(_Model):
    """Everything `judge` needs to decide an evaluation again."""

    rules_version: int
    sha: str
    production_sha: str | None
    """The production the facts were gathered for."""
    trusted_source: str
    trusted_policy: str | None
    """The digest of the trusted policy's text (None: no file)."""
    own_policy: str | None
    """The digest of the text of the policy file at the SHA (None: no file)."""
    policies: dict[str, str] = Field(default_factory=dict)
    """Texts by digest; empty once recorded (the decision record keeps them)."""
    changes: dict[str, tuple[FileChange, ...]] = Field(default_factory=dict)
    """Changed files by digest; empty once recorded (the decision record keeps them)."""
    comparisons: dict[str, Compared] = Field(default_factory=dict)
    own_change: Compared | None = None
    degraded_labels: tuple[str, ...] = ()
    now: datetime
    global_freeze: EmergencyFreeze | None = None
    state: ReleaseState
    """The release state judge decided on in the write that committed (what it reads)."""
    override: Override | None = None

    def policy_digests(self) -> set[str]:
        return {d for d in (self.trusted_policy, self.own_policy) if d is not None}

    def change_digests(self) -> set[str]:
        compared = [*self.comparisons.values(), self.own_change]
        return {c.files for c in compared if c is not None and c.files is not None}

    def bare(self) -> Replay:
        """Without its policy texts and changed files (the record keeps them, once)."""
        return self.model_copy(update={"policies": {}, "changes": {}})

    def with_contents(
        self, policies: Mapping[str, str], changes: Mapping[str, tuple[FileChange, ...]]
    ) -> Replay:
        """With the policy texts and changed files it names, taken from a record's."""
        return self.model_copy(
            update={
                "policies": {
                    **{d: policies[d] for d in self.policy_digests() if d in policies},
                    **self.policies,
                },
                "changes": {
                    **{d: changes[d] for d in self.change_digests() if d in changes},
                    **self.changes,
                },
            }
        )


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _files_digest(files: tuple[FileChange, ...]) -> str:
    return digest(json.dumps([f.model_dump() for f in files], sort_keys=True))


def judged_of(decision: Decision) -> Judged:
    return Judged(
        outcome=decision.outcome.value,
        reason=decision.reason.value,
        risk=decision.risk.value if decision.risk else None,
        detail=decision.detail,
        until=decision.until,
    )


def _compared(
    comparison: Comparison, changes: dict[str, tuple[FileChange, ...]], *, with_files: bool
) -> Compared:
    key = None
    if with_files:
        files = tuple(
            FileChange(filename=f.filename, status=f.status, previous_filename=f.previous_filename)
            for f in comparison.files
        )
        key = _files_digest(files)
        changes[key] = files
    return Compared(
        status=comparison.status,
        ahead_by=comparison.ahead_by,
        behind_by=comparison.behind_by,
        complete=comparison.complete,
        files=key,
    )


def _comparison(replay: Replay, compared: Compared) -> Comparison:
    files: tuple[FileChange, ...] = ()
    if compared.files is not None:
        if compared.files not in replay.changes:
            raise LookupError(f"the changed files {compared.files} are not in the record")
        files = replay.changes[compared.files]
    return Comparison(
        status=compared.status,
        ahead_by=compared.ahead_by,
        behind_by=compared.behind_by,
        files=tuple(ChangedFile(f.filename, f.status, f.previous_filename) for f in files),
        complete=compared.complete,
    )


def _deciding_part(state: ReleaseState, sha: str) -> ReleaseState:
    """`state` without what judge never reads: other SHAs' holds, approvals and failures,
    rejected runs, the production history."""
    return state.model_copy(
        update={
            "holds": {},
            "rejected_runs": (),
            "production_history": (),
            "approvals": {k: v for k, v in state.approvals.items() if k == sha},
            "failures": {k: v for k, v in state.failures.items() if k == sha},
        }
    )


def capture(
    facts: Facts,
    *,
    trusted_text: str | None,
    own_text: str | None,
    state: ReleaseState,
    override: Override | None = None,
) -> Replay:
    """The replay of a decision `judge(facts, state)`; `trusted_text` and `own_text` are
    the texts `facts.trusted` and `facts.own` were parsed from."""
    texts = {digest(t): t for t in (trusted_text, own_text) if t is not None}
    changes: dict[str, tuple[FileChange, ...]] = {}
    comparisons = {
        base: _compared(c, changes, with_files=base == facts.production_sha)
        for base, c in sorted(facts.comparisons.items())
    }
    own_change = (
        _compared(facts.own_change, changes, with_files=facts.production_sha is None)
        if facts.own_change is not None
        else None
    )
    return Replay(
        rules_version=RULES_VERSION,
        sha=facts.sha,
        production_sha=facts.production_sha,
        trusted_source=facts.trusted_source,
        trusted_policy=digest(trusted_text) if trusted_text is not None else None,
        own_policy=digest(own_text) if own_text is not None else None,
        policies=texts,
        changes=changes,
        comparisons=comparisons,
        own_change=own_change,
        degraded_labels=tuple(sorted(facts.degraded_labels)),
        now=facts.now,
        global_freeze=facts.global_freeze,
        state=_deciding_part(state, facts.sha),
        override=override,
    )


def _text(replay: Replay, key: str | None) -> str | None:
    if key is None:
        return None
    if key not in replay.policies:
        raise LookupError(f"the policy text {key} is not in the record")
    return replay.policies[key]


def facts_of(replay: Replay) -> Facts:
    """The facts, the policies parsed again from their texts."""
    return Facts(
        sha=replay.sha,
        production_sha=replay.production_sha,
        trusted=parse_policy(_text(replay, replay.trusted_policy)),
        trusted_source=replay.trusted_source,
        own=parse_policy(_text(replay, replay.own_policy)),
        comparisons={base: _comparison(replay, c) for base, c in replay.comparisons.items()},
        own_change=(
            _comparison(replay, replay.own_change) if replay.own_change is not None else None
        ),
        degraded_labels=frozenset(replay.degraded_labels),
        now=replay.now,
        global_freeze=replay.global_freeze,
    )


def state_of(replay: Replay) -> ReleaseState:
    return replay.state


def decide_again(replay: Replay) -> tuple[Verdict, Facts]:
    """`judge` on the stored inputs (raises `gate.StaleFacts` if they do not fit)."""
    facts = facts_of(replay)
    return judge(facts, state_of(replay)), facts


class Difference(msgspec.Struct, frozen=True):
    """One field the decision made again does not reproduce."""

    field: str
    """`outcome`, `reason`, `risk`, `detail`, `until`, or `inputs.<key>`."""
    stored: Any
    replayed: Any


def differences(
    judged: Judged, inputs: Mapping[str, Any], verdict: Verdict, facts: Facts
) -> tuple[Difference, ...]:
    """What `verdict` decides differently from the stored `judged` and `inputs` (as
    `Verdict.summary` kept them); empty: reproduced exactly."""
    again = judged_of(verdict.decision)
    found = [
        Difference(name, getattr(judged, name), getattr(again, name))
        for name in Judged.model_fields
        if getattr(judged, name) != getattr(again, name)
    ]
    summary = verdict.summary(facts)
    found.extend(
        Difference(f"inputs.{key}", inputs.get(key), summary.get(key))
        for key in sorted(set(inputs) | set(summary))
        if inputs.get(key) != summary.get(key)
    )
    return tuple(found)
