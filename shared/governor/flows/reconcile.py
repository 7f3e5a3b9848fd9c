"""Scheduled reconciliation: what webhooks missed or left waiting, taken up again.

One run, each step bounded, all of it stopping before the time budget:

redeliver  failed webhook deliveries of the App (GitHub does not retry them by itself),
           newest first back to where the last run settled everything, within GitHub's
           3-day window, at most a few times per delivery and a few per run
sweep      the installed repositories, round-robin from the cursor. Per repository one
           read of its release state, then only what is due: a dispatch intent left
           without its run, a deploy run whose completion never arrived, holds whose
           reason may have cleared (newest first), and the newest successful
           verification run on the default branch, asked with a conditional request
           (an unchanged answer costs no rate limit)
expire     old claims and run records on the local store (GCS and S3: lifecycle rules)

Every action goes through the flows a webhook goes through, under the same claims and
conditional writes: two reconciles and the webhooks for one SHA, all at once, still
dispatch it once. The cursor only saves requests; losing it changes no decision.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Protocol

import msgspec

from governor.deploy_runs import RunInfo
from governor.events import Delivery, WorkflowRunCompleted, classify
from governor.events import Ignored as IgnoredEvent
from governor.flows import deploy_outcome, verification
from governor.flows.context import Context, Repo, read_trusted
from governor.flows.delivery import site_of
from governor.flows.results import DeployOutcome, Evaluated, Kind
from governor.github.api import HookDelivery, InstalledRepo
from governor.reconcile_cursor import (
    MAX_REDELIVERIES_PER_GUID,
    REDELIVERY_WINDOW,
    ReconcileCursor,
    Redelivered,
    RepoWatch,
    due_holds,
    policy_stale,
    round_robin,
    runs_worth_asking,
    seen_push,
)
from governor.state import ReleaseState

log = logging.getLogger("governor.flows.reconcile")

SWEEP_WIDTH: Final = 8
"""Repositories reconciled at once. Their reads share the process's read pool (32) and
their writes are serialised per process: at most 40 requests in flight, under GitHub's
100 concurrent requests."""
MAX_DELIVERY_PAGES: Final = 10
HOLDS_PER_REPO: Final = 3
SETTLING: Final = timedelta(seconds=60)
"""A failed delivery this recent may have a retry of its own in flight: left to next run."""
STOP_MARGIN_S: Final = 5.0
"""Work is not started with less than this left of the budget."""
POLICY_READS_PER_RUN: Final = 150
"""Repositories whose trusted policy one run reads (2 requests each): a first run over
many repositories learns them over several runs instead of bursting past GitHub's
secondary limit of 900 points a minute."""
EXPIRY_EVERY: Final = timedelta(days=1)
MAX_EXPIRED_PER_RUN: Final = 5000


class AppPort(Protocol):
    """What reconcile asks of the GitHub App itself (App JWT and installation listings)."""

    def installation_ids(self) -> list[int]: ...

    def installed_repos(self, installation_id: int) -> list[InstalledRepo]: ...

    def hook_deliveries(
        self, cursor: str | None = None
    ) -> tuple[list[HookDelivery], str | None]: ...

    def hook_delivery_request(self, delivery_id: int) -> tuple[dict[str, str], dict[str, Any]]: ...

    def redeliver(self, delivery_id: int) -> None: ...


class _Allowance:
    """A count shared by the sweep's threads; `take` is False once it is spent."""

    def __init__(self, count: int) -> None:
        self._left = count
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True


class Action(StrEnum):
    """What reconcile did: the keys of a summary's `actions` (an API, like reason codes)."""

    REDELIVERED = "redelivered"
    REDELIVERY_GIVEN_UP = "redelivery_given_up"
    VERIFICATION_CAUGHT_UP = "verification_caught_up"
    HOLD_RESUMED = "hold_resumed"
    HOLD_UNCHANGED = "hold_unchanged"
    INTENT_FINISHED = "intent_finished"
    STATUS_RESTORED = "status_restored"
    DEPLOY_TIED_UP = "deploy_tied_up"
    EXPIRED = "expired"


class _Settled(StrEnum):
    """What became of one failed delivery in this run."""

    REDELIVERED = "redelivered"
    NOTHING_TO_DO = "nothing_to_do"
    """Its work is done, it is beyond GitHub's window, or it was redelivered enough."""
    NOT_YET = "not_yet"
    """Too recent, or the redelivery request failed: the next run looks again."""


class ReconcileSummary(msgspec.Struct):
    started_at: datetime
    finished_at: datetime | None = None
    repositories: int = 0
    """Repositories the App is installed on."""
    visited: int = 0
    swept_all: bool = False
    """Every repository was visited in this run (not only a round-robin slice)."""
    stopped_early: bool = False
    """The time budget ran out; the next run resumes from the cursor."""
    actions: Counter[str] = msgspec.field(default_factory=Counter)
    errors: list[str] = msgspec.field(default_factory=list)
    _lock: threading.Lock = msgspec.field(default_factory=threading.Lock)

    def __repr__(self) -> str:  # the lock is no part of the summary
        shown = (f"{n}={getattr(self, n)!r}" for n in self.__struct_fields__ if n != "_lock")
        return f"{type(self).__name__}({', '.join(shown)})"

    def did(self, action: Action, repo: str | None = None, *, count: int = 1) -> None:
        with self._lock:
            self.actions[action.value] += count
        log.info("reconcile: %s", action.value, extra={"repo": repo})

    def failed(self, where: str, exc: BaseException) -> None:
        message = f"{where}: {type(exc).__name__}: {exc}"
        with self._lock:
            self.errors.append(message)
        log.warning("reconcile: %s", message)

    def to_json(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "repositories": self.repositories,
            "visited": self.visited,
            "swept_all": self.swept_all,
            "stopped_early": self.stopped_early,
            "actions": {action.value: self.actions.get(action.value, 0) for action in Action},
            "errors": list(self.errors),
        }


class _Changes(msgspec.Struct):
    """What this run learned, merged into the newest cursor at the end."""

    repos: dict[str, RepoWatch] = msgspec.field(default_factory=dict)
    known_repos: set[str] | None = None
    next_repo: int | None = None
    deliveries_since: datetime | None = None
    redelivered: dict[str, Redelivered] = msgspec.field(default_factory=dict)
    expired_at: datetime | None = None

    def apply(self, cursor: ReconcileCursor, now: datetime) -> ReconcileCursor:
        repos = {**cursor.repos, **self.repos}
        if self.known_repos is not None:  # uninstalled repositories are forgotten
            repos = {key: watch for key, watch in repos.items() if key in self.known_repos}
        redelivered = {
            guid: book
            for guid, book in {**cursor.redelivered, **self.redelivered}.items()
            if now - book.first_at < REDELIVERY_WINDOW
        }
        return cursor.model_copy(
            update={
                "repos": repos,
                "next_repo": cursor.next_repo if self.next_repo is None else self.next_repo,
                "deliveries_since": self.deliveries_since or cursor.deliveries_since,
                "redelivered": redelivered,
                "expired_at": self.expired_at or cursor.expired_at,
            }
        )


class Budget(msgspec.Struct, frozen=True):
    seconds: float
    max_repos: int
    max_redeliveries: int
    monotonic: Callable[[], float] = time.monotonic


class _Deadline:
    def __init__(self, budget: Budget) -> None:
        self._monotonic = budget.monotonic
        self._at = budget.monotonic() + budget.seconds

    def near(self) -> bool:
        return self._at - self._monotonic() < STOP_MARGIN_S


def run(
    ctx: Context, app: AppPort, budget: Budget, *, only_repo: int | str | None = None
) -> ReconcileSummary:
    """One reconcile run. `only_repo` (id or owner/name): that repository only, and no
    redelivery or expiry (the CLI's `governor reconcile REPO`)."""
    cursor, last_read = ctx.ledger.read_cursor()
    one = _Run(ctx, app, budget, cursor)
    if only_repo is None:
        one.redeliver()
    one.sweep(only_repo)
    if only_repo is None and not one.deadline.near():
        one.expire()
    now = ctx.clock()
    try:
        ctx.ledger.update_cursor(lambda c: one.changes.apply(c, now), last_read)
    except Exception as exc:  # the next run asks again: requests, not decisions, are lost
        one.summary.failed("saving the cursor", exc)
    one.summary.finished_at = ctx.clock()
    return one.summary


class _Run:
    def __init__(self, ctx: Context, app: AppPort, budget: Budget, cursor: ReconcileCursor):
        self.ctx, self.app, self.budget, self.cursor = ctx, app, budget, cursor
        self.deadline = _Deadline(budget)
        self.summary = ReconcileSummary(started_at=ctx.clock())
        self.changes = _Changes()
        self.policy_reads = _Allowance(POLICY_READS_PER_RUN)

    # -- redeliver -----------------------------------------------------------------------

    def redeliver(self) -> None:
        now = self.ctx.clock()
        window_start = now - REDELIVERY_WINDOW
        since = max(self.cursor.deliveries_since or window_start, window_start)
        try:
            tries, complete = self._deliveries_since(since)
        except Exception as exc:
            self.summary.failed("listing webhook deliveries", exc)
            return
        unsettled: list[datetime] = []
        asked = 0
        for guid, attempts in sorted(tries.items(), key=lambda kv: _first(kv[1])):
            if any(a.succeeded for a in attempts):
                continue
            last = max(attempts, key=lambda a: a.delivered_at)
            if asked >= self.budget.max_redeliveries or self.deadline.near():
                unsettled.append(last.delivered_at)
                continue
            outcome = self._settle(guid, attempts, now)
            if outcome is _Settled.NOT_YET:
                unsettled.append(last.delivered_at)
            asked += outcome is _Settled.REDELIVERED
        newest = max((a.delivered_at for tried in tries.values() for a in tried), default=None)
        if complete and newest is not None:
            self.changes.deliveries_since = min([newest, *unsettled])

    def _deliveries_since(self, since: datetime) -> tuple[dict[str, list[HookDelivery]], bool]:
        """Attempts delivered since `since`, by GUID (a redelivery reuses it); and whether
        the listing reached back that far within the page limit."""
        tries: dict[str, list[HookDelivery]] = {}
        page_cursor: str | None = None
        for _ in range(MAX_DELIVERY_PAGES):
            page, page_cursor = self.app.hook_deliveries(page_cursor)
            for attempt in page:
                if attempt.delivered_at < since:
                    return tries, True
                tries.setdefault(attempt.guid, []).append(attempt)
            if page_cursor is None:
                return tries, True
        return tries, False

    def _settle(self, guid: str, attempts: list[HookDelivery], now: datetime) -> _Settled:
        """Redeliver a delivery none of whose attempts succeeded, if that can still help."""
        last = max(attempts, key=lambda a: a.delivered_at)
        book = self.changes.redelivered.get(guid) or self.cursor.redelivered.get(guid)
        first_at = min(_first(attempts), book.first_at if book else now)
        if now - first_at >= REDELIVERY_WINDOW:
            return _Settled.NOTHING_TO_DO  # beyond GitHub's window: nothing can be done
        if now - last.delivered_at < SETTLING:
            return _Settled.NOT_YET
        if book is not None and book.count >= MAX_REDELIVERIES_PER_GUID:
            if book.count == MAX_REDELIVERIES_PER_GUID:  # said once, then remembered
                self.summary.did(Action.REDELIVERY_GIVEN_UP)
                self.changes.redelivered[guid] = book.model_copy(update={"count": book.count + 1})
            return _Settled.NOTHING_TO_DO
        try:
            if _work_done(self.ctx, self.app, last):
                return _Settled.NOTHING_TO_DO
            self.app.redeliver(last.id)
        except Exception as exc:
            self.summary.failed(f"redelivering {guid}", exc)
            return _Settled.NOT_YET
        count = (book.count if book else 0) + 1
        self.changes.redelivered[guid] = Redelivered(count=count, first_at=first_at)
        self.summary.did(Action.REDELIVERED)
        return _Settled.REDELIVERED

    # -- sweep ---------------------------------------------------------------------------

    def sweep(self, only_repo: int | str | None) -> None:
        summary = self.summary
        installed: dict[int, InstalledRepo] = {}
        complete = True
        try:
            installation_ids = self.app.installation_ids()
        except Exception as exc:
            summary.failed("listing installations", exc)
            return
        for installation_id in installation_ids:
            try:
                installed.update((r.id, r) for r in self.app.installed_repos(installation_id))
            except Exception as exc:
                complete = False
                summary.failed(f"listing the repositories of installation {installation_id}", exc)
        summary.repositories = len(installed)
        ids = sorted(installed)
        next_repo: int | None = None
        if only_repo is not None:
            chosen = [i for i in ids if _is_repo(only_repo, installed[i])]
            if not chosen:
                summary.errors.append(f"{only_repo}: not a repository the App is installed on")
        else:
            chosen, next_repo = round_robin(ids, self.cursor.next_repo, self.budget.max_repos)
            if complete:
                self.changes.known_repos = {str(i) for i in ids}

        def visit(repo_id: int) -> tuple[int, RepoWatch | None, bool]:
            if self.deadline.near():
                return repo_id, None, False
            watch = self.cursor.repos.get(str(repo_id))
            try:
                visited = _reconcile_repo(
                    self.ctx, installed[repo_id], watch, summary, self.policy_reads
                )
                return repo_id, visited, True
            except Exception as exc:
                summary.failed(installed[repo_id].full_name, exc)
                return repo_id, None, True

        with ThreadPoolExecutor(max_workers=SWEEP_WIDTH, thread_name_prefix="reconcile") as pool:
            results = list(pool.map(visit, chosen))
        skipped = [repo_id for repo_id, _watch, visited in results if not visited]
        for repo_id, watch, visited in results:
            summary.visited += visited
            if watch is not None:
                self.changes.repos[str(repo_id)] = watch
        summary.stopped_early = bool(skipped)
        summary.swept_all = only_repo is None and not skipped and len(chosen) == len(ids)
        if next_repo is not None:
            self.changes.next_repo = ids.index(skipped[0]) if skipped else next_repo

    # -- expire --------------------------------------------------------------------------

    def expire(self) -> None:
        """Delete claims and run records past `retention_days` and decision records past
        `audit_retention_days`, once a day, on the local store; GCS and S3 buckets expire
        them by lifecycle rules of the same ages (infra/, docs/storage.md)."""
        ctx, now = self.ctx, self.ctx.clock()
        if not ctx.ledger.store.url.startswith("file:"):
            return
        if self.cursor.expired_at is not None and now - self.cursor.expired_at < EXPIRY_EVERY:
            return
        try:
            expired = ctx.ledger.expire(
                now,
                retention=timedelta(days=ctx.settings.retention_days),
                audit_retention=timedelta(days=ctx.settings.audit_retention_days),
                limit=MAX_EXPIRED_PER_RUN,
            )
        except Exception as exc:
            self.summary.failed("expiring old records", exc)
            return
        self.summary.did(Action.EXPIRED, count=expired)
        self.changes.expired_at = now


def _is_repo(wanted: int | str, installed: InstalledRepo) -> bool:
    """`only_repo`: the id, or owner/name compared case-insensitively, as GitHub's names
    (and every command's REPO) are."""
    if isinstance(wanted, int):
        return installed.id == wanted
    return installed.full_name.lower() == wanted.strip().lower()


def _first(attempts: list[HookDelivery]) -> datetime:
    return min(a.delivered_at for a in attempts)


def _work_done(ctx: Context, app: AppPort, attempt: HookDelivery) -> bool:
    """The delivery's work is done already (another delivery of the same fact did it), or
    there is none: the governor would ignore it."""
    _headers, payload = app.hook_delivery_request(attempt.id)
    event = classify(Delivery(attempt.guid, attempt.event, payload))
    if isinstance(event, IgnoredEvent):
        return True
    entry = ctx.ledger.claim_entry(site_of(ctx, event))
    return entry is not None and entry.status == "done"


# -- one repository ----------------------------------------------------------------------


def _reconcile_repo(
    ctx: Context,
    installed: InstalledRepo,
    watch: RepoWatch | None,
    summary: ReconcileSummary,
    policy_reads: _Allowance,
) -> RepoWatch | None:
    repo = Repo(
        id=installed.id,
        full_name=installed.full_name,
        default_branch=installed.default_branch,
        installation_id=installed.installation_id,
        api=ctx.github.repo(installed.installation_id, installed.full_name),
    )
    state = ctx.ledger.read_state(repo.id, repo.full_name)  # the one read of an idle repo
    now = ctx.clock()
    _finish_dispatch(ctx, repo, state, now, summary)
    _finish_failures(ctx, repo, state, now, summary)
    # An emergency freeze with no end holds until lifted: the freeze of every repository
    # is read only for a repository that has such a hold.
    untimed = any(h.reason == "freeze_window" and h.until is None for h in state.holds.values())
    everywhere = ctx.ledger.read_global_freeze() if untimed else None
    frozen_everywhere = everywhere is not None and everywhere.active(now)
    for hold in due_holds(state, now, HOLDS_PER_REPO, frozen_everywhere=frozen_everywhere):
        result = verification.evaluate(
            ctx, repo, hold.sha, trigger=verification.RECONCILE, delivery=None
        )
        unchanged = isinstance(result, Evaluated) and result.kind is Kind.UNCHANGED
        summary.did(Action.HOLD_UNCHANGED if unchanged else Action.HOLD_RESUMED, repo.full_name)
    if watch is None or policy_stale(watch, state, now, repo.id):
        if not policy_reads.take():
            return watch  # this run's share of policy reads is spent: the next run
        watch = _with_policy(repo, watch, state, now)
    if not watch.governed or watch.workflow is None:
        return watch
    if not runs_worth_asking(watch, installed.pushed_at, now):
        return watch  # no push for long: no verification to catch up, no request
    asked = seen_push(watch, installed.pushed_at, now)
    answer = repo.api.newest_successful_push_run(
        watch.workflow, repo.default_branch, etag=watch.runs_etag
    )
    if not answer.changed:
        return asked
    newest = answer.value
    if newest is not None and _catch_up(ctx, repo, installed, newest, state):
        summary.did(Action.VERIFICATION_CAUGHT_UP, repo.full_name)
    # Remembered only now: had the catch-up failed, the next run would ask again.
    return asked.model_copy(
        update={
            "runs_etag": answer.etag,
            "newest_run_id": int(newest["id"]) if newest is not None else None,
        }
    )


def _finish_dispatch(
    ctx: Context, repo: Repo, state: ReleaseState, now: datetime, summary: ReconcileSummary
) -> None:
    """The newest dispatch, if it is neither in production nor failed and older than the
    lease: find or redo its run if it has none; apply its outcome if its run completed."""
    if not state.dispatches:
        return
    current = state.dispatches[-1]
    if current.sha == state.production_sha or state.dispatch_for(current.sha) != current:
        return
    if now - current.at < ctx.lease:
        return  # its own delivery may still be at it
    if current.run_id is None:
        verification.evaluate(ctx, repo, current.sha, trigger=verification.RECONCILE, delivery=None)
        summary.did(Action.INTENT_FINISHED, repo.full_name)
        return
    decided = ctx.ledger.read_decision(repo.id, current.sha)
    if decided is None or decided.latest is None:
        # Its delivery died after the dispatch, before its status and evaluation.
        restored = verification.restore_dispatched(
            ctx, repo, current, current.run_id, trigger=verification.RECONCILE, delivery=None
        )
        ctx.ledger.record_evaluation(repo.id, repo.full_name, current.sha, restored)
        summary.did(Action.STATUS_RESTORED, repo.full_name)
    _tie_up(ctx, repo, current.run_id, summary)


def _finish_failures(
    ctx: Context, repo: Repo, state: ReleaseState, now: datetime, summary: ReconcileSummary
) -> None:
    """A failed deploy whose failure issue is not recorded: its outcome was cut short (after
    the state, before or while the issue was made). Applying it again is idempotent per run
    attempt and finds an issue already made by its title."""
    for failure in state.failures.values():
        if (
            failure.issue_number is not None
            or not failure.runs
            or now - failure.last_at < ctx.lease
        ):
            continue
        run_id, _, attempt = failure.runs[-1].partition("-")
        entry = ctx.ledger.claim_entry(ctx.ledger.run_site(repo.id, int(run_id), int(attempt)))
        if entry is None or entry.status != "done":
            _tie_up(ctx, repo, int(run_id), summary)


def _tie_up(ctx: Context, repo: Repo, run_id: int, summary: ReconcileSummary) -> None:
    """Apply the outcome of a deploy run if it completed, under its run record's claim."""
    run = RunInfo.from_json(repo.api.run(run_id))
    if run.status != "completed":
        return
    done = deploy_outcome.on_run_completed(ctx, repo, run, f"reconcile-run-{run.id}-{run.attempt}")
    if isinstance(done, DeployOutcome):
        summary.did(Action.DEPLOY_TIED_UP, repo.full_name)


def _with_policy(
    repo: Repo, watch: RepoWatch | None, state: ReleaseState, now: datetime
) -> RepoWatch:
    """The watch with the trusted policy's verification workflow, read anew."""
    policy = read_trusted(repo, state.production_sha).governing
    workflow = _workflow_file(policy.verification_workflow) if policy else None
    same = watch is not None and watch.workflow == workflow
    return RepoWatch(
        full_name=repo.full_name,
        workflow=workflow,
        governed=policy is not None and policy.deploy_workflow is not None,
        policy_read_at=now,
        policy_production_sha=state.production_sha,
        runs_etag=watch.runs_etag if same and watch is not None else None,
        newest_run_id=watch.newest_run_id if same and watch is not None else None,
        pushed_at=watch.pushed_at if same and watch is not None else None,
        pushed_seen_at=watch.pushed_seen_at if same and watch is not None else None,
    )


def _workflow_file(spec: str) -> str | None:
    """The file name to list runs of; None if the policy names the workflow by its name."""
    if not spec.endswith((".yml", ".yaml")):
        return None
    return spec.removeprefix(".github/workflows/")


def _catch_up(
    ctx: Context,
    repo: Repo,
    installed: InstalledRepo,
    run: Mapping[str, Any],
    state: ReleaseState,
) -> bool:
    """Evaluate the SHA of `run` if nothing has decided it yet. True if it was evaluated."""
    sha = str(run.get("head_sha"))
    if sha == state.production_sha or state.dispatch_for(sha) is not None or sha in state.holds:
        return False
    try:
        decided = ctx.ledger.read_decision(repo.id, sha)
    except ValueError:
        return False  # not a commit SHA: nothing the governor could decide
    if decided is not None and decided.latest is not None:
        return False
    actor = run.get("triggering_actor") or run.get("actor") or {"login": "github"}
    event = WorkflowRunCompleted.model_validate(
        {
            "workflow_run": run,
            "repository": {
                "id": installed.id,
                "full_name": installed.full_name,
                "default_branch": installed.default_branch,
            },
            "installation": {"id": installed.installation_id},
            "sender": actor,
        }
    )
    result = verification.on_verification(ctx, repo, event, f"reconcile-{event.workflow_run.id}")
    return isinstance(result, Evaluated)
