"""`governor approve`, `rollback`, `freeze` and `degraded`: the commands that change what
the gate does. Each write is a conditional write through the ledger (the flows in
`governor.flows.approval`, `.rollback` and `.emergency`), so operators and webhooks
running at once never lose each other's changes.

Who: `--by` (default: the local user) and, where the store's backend can tell, the
identity its credentials belong to. Why: `--reason`, required. Both are recorded.
"""

from __future__ import annotations

import getpass
import re
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import msgspec

from governor.commands import EXIT_ERROR, EXIT_HELD, EXIT_USAGE, CommandError, repos
from governor.decision import Outcome
from governor.flows import approval, emergency
from governor.flows import rollback as rollback_flow
from governor.flows.results import Evaluated, Ignored, Kind
from governor.ledger import Ledger, Lifting
from governor.state import DegradedDeclared, EmergencyFreeze, Lift
from governor.store import ObjectStore, credentials_identity
from governor.wiring import Governor

MAX_REASON: Final = 300
MAX_BY: Final = 100
_RELATIVE: Final = re.compile(r"([1-9][0-9]{0,4})([mhd])")
_UNITS: Final = {"m": "minutes", "h": "hours", "d": "days"}
MAX_FREEZE: Final = timedelta(days=90)
IN_PRODUCTION_DETAIL: Final = "{sha} is in production already: nothing to approve"


class Operator(msgspec.Struct, frozen=True):
    by: str
    identity: str | None
    """Who the store's credentials belong to, where the backend can tell."""


def operator(store: ObjectStore, by: str | None) -> Operator:
    name = by if by is not None else _local_user()
    return Operator(_words(name, "--by", MAX_BY), credentials_identity(store))


def reason(text: str) -> str:
    return _words(text, "--reason", MAX_REASON)


def _words(text: str, option: str, limit: int) -> str:
    cleaned = " ".join(text.split())
    if not cleaned:
        raise CommandError(f"{option} must say something", EXIT_USAGE)
    if len(cleaned) > limit:
        raise CommandError(f"{option} is over {limit} characters", EXIT_USAGE)
    if any(not c.isprintable() for c in cleaned):
        raise CommandError(f"{option} holds control characters", EXIT_USAGE)
    return cleaned


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        raise CommandError("cannot tell who you are: pass --by NAME", EXIT_USAGE) from None


def parse_until(text: str | None, now: datetime) -> datetime | None:
    """`--until`: `30m`, `4h`, `2d` from now, or an ISO 8601 time with its zone."""
    if text is None:
        return None
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        until = now + timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    else:
        try:
            until = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise CommandError(
                f"--until '{text}' is not a time: give e.g. 4h, 2d or 2026-12-01T18:00Z",
                EXIT_USAGE,
            ) from None
        if until.tzinfo is None:
            raise CommandError(
                f"--until '{text}' has no time zone: add Z (UTC) or an offset", EXIT_USAGE
            )
    until = until.astimezone(UTC)
    if until <= now:
        raise CommandError(f"--until '{text}' is in the past", EXIT_USAGE)
    if until - now > MAX_FREEZE:
        raise CommandError("--until is more than 90 days away: freeze for less", EXIT_USAGE)
    return until


# -- approve -------------------------------------------------------------------------------


class ApproveResult(msgspec.Struct, frozen=True):
    repo: str
    sha: str
    by: str
    identity: str | None
    reason: str
    outcome: str | None
    """ALLOW, HOLD, or None when the SHA was not evaluated (see `result`)."""
    decision_reason: str | None
    result: str
    """decided, already_dispatched, dispatch_in_progress, in_production, ignored, ...
    `in_production` (exit 0): the SHA is in production, so nothing was approved: no
    approval is recorded for a SHA in production (`approval.by_operator`)."""
    detail: str | None
    dispatch: str | None

    @property
    def exit_code(self) -> int:
        if self.result == "ignored":
            return EXIT_ERROR
        going = self.outcome == Outcome.ALLOW.value or self.result in {
            Kind.ALREADY_DISPATCHED.value,
            Kind.DISPATCH_IN_PROGRESS.value,
            Kind.DISPATCH_RECOVERED.value,
            Kind.IN_PRODUCTION.value,
        }
        return 0 if going else EXIT_HELD


def approve(
    governor: Governor, repo_text: str, sha_text: str, *, by: str | None, why: str
) -> ApproveResult:
    who = operator(governor.store, by)
    why = reason(why)
    repo, _ = repos.locate(governor, repo_text)
    sha = _full_sha(governor.store, repo.id, sha_text)
    result = approval.by_operator(
        governor.context, repo, sha, by=who.by, why=why, identity=who.identity
    )

    def answer(
        kind: str,
        detail: str | None,
        outcome: str | None = None,
        decided: str | None = None,
        dispatch: str | None = None,
    ) -> ApproveResult:
        return ApproveResult(
            repo.full_name, sha, who.by, who.identity, why, outcome, decided, kind, detail, dispatch
        )

    if isinstance(result, Ignored):
        return answer("ignored", result.why)
    assert isinstance(result, Evaluated)
    if result.kind is Kind.IN_PRODUCTION:
        return answer(Kind.IN_PRODUCTION.value, IN_PRODUCTION_DETAIL.format(sha=sha[:7]))
    record = governor.context.ledger.read_decision(repo.id, sha)
    latest = record.latest if record is not None else None
    return answer(
        result.kind.value,
        latest.detail if latest is not None and result.decision is not None else None,
        outcome=result.decision.value if result.decision else None,
        decided=result.reason,
        dispatch=result.dispatch,
    )


def _full_sha(store: ObjectStore, repo_id: int, text: str) -> str:
    state = repos.read_state(store, repo_id)
    if state is None:
        sha = text.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            raise CommandError(f"'{text}' is not a full commit SHA (40 hex digits)", EXIT_USAGE)
        return sha
    return repos.resolve_sha(store, state, text)


# -- rollback ------------------------------------------------------------------------------


class RollbackResult(msgspec.Struct, frozen=True):
    repo: str
    target: str
    from_sha: str | None
    by: str
    identity: str | None
    reason: str
    forced: bool
    outcome: str
    decision_reason: str
    detail: str
    until: datetime | None
    result: str
    """decided (dispatched or held by this command), already_dispatched or
    dispatch_in_progress (another operator's rollback to the same SHA)."""
    dispatch: str | None
    run_id: int | None

    @property
    def exit_code(self) -> int:
        return 0 if self.outcome == Outcome.ALLOW.value else EXIT_HELD


def rollback(
    governor: Governor,
    repo_text: str,
    *,
    to: str | None,
    by: str | None,
    why: str,
    force: bool,
) -> RollbackResult:
    who = operator(governor.store, by)
    why = reason(why)
    repo, _ = repos.locate(governor, repo_text)
    target = _full_sha(governor.store, repo.id, to) if to is not None else None
    request = rollback_flow.RollbackRequest(target, who.by, why, force, who.identity)
    try:
        done = rollback_flow.rollback(governor.context, repo, request)
    except rollback_flow.RollbackRefused as refused:
        raise CommandError(str(refused), EXIT_ERROR if refused.by_github else EXIT_HELD) from None
    decision = done.decision
    return RollbackResult(
        repo.full_name,
        done.target,
        done.from_sha,
        who.by,
        who.identity,
        why,
        force,
        decision.outcome.value,
        decision.reason.value,
        decision.detail,
        decision.until,
        done.kind.value,
        done.dispatch,
        done.run_id,
    )


# -- freeze and degraded -----------------------------------------------------------------


class DeclaredResult(msgspec.Struct, frozen=True):
    what: Literal["freeze", "degraded"]
    scope: str
    """owner/name, or `all` for the freeze of every repository."""
    on: bool
    changed: bool
    by: str
    identity: str | None
    reason: str
    until: datetime | None
    held: tuple[str, ...]
    """SHAs held for it (when lifted: they resume at the next reconcile)."""


def freeze(
    store: ObjectStore,
    repo_text: str | None,
    *,
    on: bool,
    by: str | None,
    why: str,
    until: str | None,
    now: datetime,
) -> DeclaredResult:
    who = operator(store, by)
    why = reason(why)
    end = parse_until(until, now) if on else None
    if not on and until is not None:
        raise CommandError("--until goes with 'on'", EXIT_USAGE)
    value = (
        EmergencyFreeze(reason=why, by=who.by, at=now, until=end, identity=who.identity)
        if on
        else None
    )
    ledger = _ledger(store, on, who, why, now)
    if repo_text is None:
        declared = emergency.freeze_all(ledger, value, now)
        scope, held = "all", _held_everywhere(store)
    else:
        state = repos.resolve_state(store, repo_text)
        declared = emergency.freeze_repo(ledger, state.repo_id, state.repo, value, now)
        scope, held = state.repo, tuple(sha for _, sha in declared.held)
    changed = _changed(declared.before, declared.after)
    return DeclaredResult("freeze", scope, on, changed, who.by, who.identity, why, end, held)


def degraded(
    store: ObjectStore, repo_text: str, *, on: bool, by: str | None, why: str, now: datetime
) -> DeclaredResult:
    who = operator(store, by)
    why = reason(why)
    value = DegradedDeclared(reason=why, by=who.by, at=now, identity=who.identity) if on else None
    state = repos.resolve_state(store, repo_text)
    declared = emergency.degraded(
        _ledger(store, on, who, why, now), state.repo_id, state.repo, value, now
    )
    held = tuple(sha for _, sha in declared.held)
    changed = _changed(declared.before, declared.after)
    return DeclaredResult(
        "degraded", state.repo, on, changed, who.by, who.identity, why, None, held
    )


def _ledger(store: ObjectStore, on: bool, who: Operator, why: str, now: datetime) -> Ledger:
    """Lifting (`off`): the write that lifts keeps who lifted, when and why."""
    return (
        Ledger(store)
        if on
        else Lifting(store, Lift(by=who.by, reason=why, at=now, identity=who.identity))
    )


def _changed(
    before: EmergencyFreeze | DegradedDeclared | None,
    after: EmergencyFreeze | DegradedDeclared | None,
) -> bool:
    """On again over an existing declaration replaces it (new reason, end): a change."""
    return before != after


def _held_everywhere(store: ObjectStore) -> tuple[str, ...]:
    return tuple(
        f"{state.repo}@{sha}"
        for state in repos.all_states(store)
        for sha, hold in sorted(state.holds.items())
        if hold.reason == "freeze_window"
    )
