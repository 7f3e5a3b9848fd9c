"""What every flow shares: settings, the ledger, the GitHub port, the clock; the repository
an event is about; the read wave; the trusted policy; statuses and decision links."""

from __future__ import annotations

import contextvars
import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Final, Protocol, TypeVar

import msgspec

from governor import crashpoints, links, messages
from governor.decision import Decision
from governor.flows.results import Duplicate, Evaluated, FlowResult, InProgress, to_json
from governor.github.api import RepoApi
from governor.ledger import Claim, ClaimSite, ClaimStatus, Ledger
from governor.policy import POLICY_PATH, Mode, Policy, PolicyProblem, parse_policy
from governor.settings import AppSettings
from governor.state import Dispatch

T = TypeVar("T")
R = TypeVar("R", bound=FlowResult)
WAVE_POOL_SIZE: Final = 32
"""Reads in flight at once per process, across concurrent requests."""
_waves = itertools.count(1)

MaybePolicy = Policy | PolicyProblem | None


class GitHubPort(Protocol):
    def repo(self, installation_id: int, full_name: str) -> RepoApi: ...

    def bot_login(self) -> str:
        """The App's own bot user (`<slug>[bot]`): the triggering actor of its dispatches."""
        ...


class Context(msgspec.Struct, frozen=True):
    settings: AppSettings
    ledger: Ledger
    github: GitHubPort
    clock: Callable[[], datetime]
    lease: timedelta = timedelta(seconds=120)


class Repo(msgspec.Struct, frozen=True):
    """The repository an event is about, and how to reach it."""

    id: int
    full_name: str
    default_branch: str
    installation_id: int
    api: RepoApi

    @property
    def default_ref(self) -> str:
        return f"refs/heads/{self.default_branch}"


class Trusted(msgspec.Struct, frozen=True):
    """The policy that governs, and where it was read."""

    policy: MaybePolicy
    source: str

    @property
    def governing(self) -> Policy | None:
        """The policy, if it governs the repository (present, valid and enabled)."""
        policy = self.policy
        return policy if isinstance(policy, Policy) and policy.enabled else None


class Wave:
    """Reads submitted together and answered together: one round trip, not one per read."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.futures: list[Future[object]] = []

    def read(self, call: Callable[..., T], *args: object) -> Future[T]:
        # In a copy of this thread's context: the request's deadline reaches the read, and
        # the read knows its wave (`current_wave`).
        context = contextvars.copy_context()
        context.run(_current_wave.set, self.name)
        future = _pool().submit(context.run, call, *args)
        self.futures.append(future)  # type: ignore[arg-type]
        return future


def start_wave() -> Wave:
    """A read wave nobody waits for as a whole: each read is waited for where it is used,
    and the caller may do other work (a write) while they are in flight."""
    return Wave(f"read-wave-{next(_waves)}")


@contextmanager
def wave() -> Iterator[Wave]:
    """A read wave; leaving the block waits for every read (errors surface on `result()`)."""
    reads = start_wave()
    try:
        yield reads
    finally:
        futures.wait(reads.futures)


def alongside(here: Callable[[], T], there: Callable[[], object]) -> T:
    """`here` on this thread while `there` runs on the wave pool, for two effects that
    need nothing of each other. Both are waited for; an error of either is raised, this
    thread's first."""
    context = contextvars.copy_context()
    other = _pool().submit(context.run, there)
    try:
        result = here()
    finally:
        futures.wait([other])
    other.result()
    return result


def current_wave() -> str | None:
    """The read wave the calling code runs in; None on a flow's own thread."""
    return _current_wave.get()


_current_wave: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "governor_read_wave", default=None
)
_pool_lock = threading.Lock()
_shared_pool: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """One pool for every wave of the process: starting threads per wave cost more than
    the reads of a wave on a busy instance. Started on the first read (cold start)."""
    global _shared_pool  # noqa: PLW0603
    with _pool_lock:
        if _shared_pool is None:
            _shared_pool = ThreadPoolExecutor(
                max_workers=WAVE_POOL_SIZE, thread_name_prefix="read-wave"
            )
        return _shared_pool


def claimed(
    ctx: Context, site: ClaimSite, event: str, guid: str, work: Callable[[Claim], R]
) -> R | Duplicate | InProgress:
    """Do `work` under the claim at `site`: once, by one instance at a time.

    Done already: the recorded outcome. A live lease elsewhere: in progress. A failure
    releases the claim (the redelivery redoes the work); success finishes it, with the
    evaluation where the site keeps them, in the same write.
    """
    claim = ctx.ledger.claim(site, event, ctx.clock(), ctx.lease, guid=guid)
    if claim.status is ClaimStatus.DONE:
        return Duplicate(claim.outcome)
    if claim.status is ClaimStatus.IN_PROGRESS:
        return InProgress(claim.lease_until)
    crashpoints.reached("claimed." + site.key.split("/", 1)[0])
    try:
        result = work(claim)
    except Exception:
        ctx.ledger.release(site, claim.owner, ctx.clock())
        raise
    record = result.record if isinstance(result, Evaluated) else None
    ctx.ledger.finish(site, claim.owner, to_json(result), ctx.clock(), record)
    return result


def choose_trusted(
    repo: Repo, production_sha: str | None, at_production: str | None, on_default: str | None
) -> Trusted:
    """The policy in production; before any deploy, or if production's cannot govern
    (missing, invalid, disabled, or naming no deploy workflow), the default branch's: a
    repository must be able to opt in again or mend its policy without a deploy."""
    if production_sha is not None:
        policy = parse_policy(at_production)
        if isinstance(policy, Policy) and policy.enabled and policy.deploy_workflow:
            return Trusted(policy, f"production {production_sha}")
    return Trusted(parse_policy(on_default), repo.default_ref)


def read_trusted(repo: Repo, production_sha: str | None) -> Trusted:
    """The trusted policy, both candidate files read in one wave."""
    with wave() as w:
        on_default = w.read(repo.api.file_text, POLICY_PATH, repo.default_ref)
        at_production = (
            w.read(repo.api.file_text, POLICY_PATH, production_sha) if production_sha else None
        )
    return choose_trusted(
        repo,
        production_sha,
        at_production.result() if at_production else None,
        on_default.result(),
    )


def mode_of(ctx: Context, policy: MaybePolicy) -> Mode:
    if isinstance(policy, Policy) and policy.mode is not None:
        return policy.mode
    return ctx.settings.mode


def post_status(
    ctx: Context, repo: Repo, sha: str, decision: Decision, *, policy: MaybePolicy, mode: Mode
) -> None:
    state, description = messages.commit_status(decision, policy, mode)
    repo.api.create_status(
        sha,
        state=state,
        context=ctx.settings.status_context,
        description=description,
        target_url=decision_link(ctx.settings, repo.id, sha, ctx.clock()),
    )


def post_dispatched_status(ctx: Context, repo: Repo, live: Dispatch, run_id: int | None) -> None:
    """`success` for a SHA whose dispatch stands, when the status of its decision may never
    have been posted (the delivery that dispatched it died first)."""
    repo.api.create_status(
        live.sha,
        state="success",
        context=ctx.settings.status_context,
        description=messages.dispatched_status(live.reason, live.detail, run_id),
        target_url=decision_link(ctx.settings, repo.id, live.sha, ctx.clock()),
    )


def decision_link(settings: AppSettings, repo_id: int, sha: str, now: datetime) -> str | None:
    """A signed link to the decision page, valid for `link_ttl_days` from `now`."""
    if not settings.public_url or settings.link_secret is None:
        return None
    secret = settings.link_secret.get_secret_value().encode()
    ttl = timedelta(days=settings.link_ttl_days)
    return links.make_link(settings.public_url, secret, repo_id, sha, now=now, ttl=ttl)
