"""The at-most-once core: a dispatch intent is recorded before the dispatch, the run id
after it, and a run is only ever taken for the governor's own when it provably is
(`governor.deploy_runs`). Whoever finds an intent without a run looks for the run
before anything is dispatched again."""

from __future__ import annotations

from collections.abc import Callable

from governor import crashpoints
from governor import state as transitions
from governor.deploy_runs import RunInfo, find_dispatched_run, is_dispatched_run
from governor.flows.context import Context, Repo, alongside, read_trusted
from governor.flows.results import Evaluated, Kind
from governor.github.api import DispatchResult
from governor.github.client import GitHubError, OutcomeUnknown, RateLimited
from governor.policy import Policy
from governor.state import Dispatch, ReleaseState


def target(repo: Repo, dispatch: Dispatch, policy: Policy | None) -> tuple[str, str]:
    """The workflow and branch of a dispatch: as recorded, else the trusted policy's."""
    workflow = dispatch.workflow or (policy.deploy_workflow if policy else None)
    branch = dispatch.ref or (policy.deploy_ref if policy else None) or repo.default_branch
    if workflow is None:
        raise LookupError(f"no deploy workflow known for the dispatch of {dispatch.sha}")
    return workflow, branch


class DispatchRefused(Exception):
    """GitHub answered the dispatch request that it will not dispatch, so it did not: 403
    without a rate limit, 404 (no such workflow), 422 (no `workflow_dispatch` trigger, an
    input it does not take). Only the dispatch request's own answer means this: an error
    after it (finding the run, the status) leaves the dispatch standing."""

    def __init__(self, cause: GitHubError) -> None:
        super().__init__(str(cause))
        self.status, self.message = cause.status, cause.message


def send(
    ctx: Context,
    repo: Repo,
    live: Dispatch,
    policy: Policy | None = None,
    *,
    then: Callable[[], object] = lambda: None,
) -> str:
    """Dispatch the deploy workflow for `live.sha`, record the run and do `then` (post
    the commit status); say what happened.

    The run's write and `then` run together once the dispatch is answered: neither needs
    the other. A crash between them leaves an intent without its run, as a crash right
    after the dispatch does, and whoever finds it looks for the run. Raises
    DispatchRefused if GitHub refused the dispatch; any other error leaves the intent
    standing for recovery.
    """
    workflow, branch = target(repo, live, policy)
    inputs = {"sha": live.sha}

    def request() -> DispatchResult:
        try:
            return repo.api.dispatch(workflow, f"refs/heads/{branch}", inputs)
        except GitHubError as exc:
            if exc.status in (403, 404, 422) and not isinstance(exc, RateLimited):
                raise DispatchRefused(exc) from exc
            raise

    try:
        result = request()
    except OutcomeUnknown:
        # The dispatch may have happened: look for its run before trying once more. If
        # that second try is unclear too, the error ends this delivery; whoever finds the
        # intent later looks for the run again before deciding again.
        found = find_run(ctx, repo, live, policy)
        if found is not None:
            run = found
            alongside(lambda: record_run(ctx, repo, live, run.id, run.html_url), then)
            return f"dispatched, run {run.id} found after an unclear answer"
        result = request()
    crashpoints.reached("dispatch.answered")
    run_id, run_url = result.run_id, result.html_url
    if run_id is None:  # an older GitHub answers 204 without the run
        found = find_run(ctx, repo, live, policy)
        run_id, run_url = (found.id, found.html_url) if found else (None, None)
    if run_id is None:
        then()
        return "dispatched"

    def record(run_id: int = run_id) -> None:
        record_run(ctx, repo, live, run_id, run_url)
        crashpoints.reached("dispatch.run_recorded")

    alongside(record, then)
    return f"dispatched run {run_id}"


def find_run(ctx: Context, repo: Repo, dispatch: Dispatch, policy: Policy | None) -> RunInfo | None:
    """The deploy run of `dispatch`, provably the governor's."""
    workflow, branch = target(repo, dispatch, policy)
    listed = repo.api.workflow_runs(workflow, event="workflow_dispatch", branch=branch)
    return find_dispatched_run(
        (RunInfo.from_json(run) for run in listed),
        dispatch,
        workflow=workflow,
        ref=branch,
        bot_login=ctx.github.bot_login(),
    )


def record_run(
    ctx: Context, repo: Repo, dispatch: Dispatch, run_id: int, run_url: str | None
) -> ReleaseState:
    now = ctx.clock()
    return ctx.ledger.transition(
        repo.id,
        repo.full_name,
        lambda s: transitions.record_run(
            s, dispatch.sha, intent_id=dispatch.intent_id, run_id=run_id, run_url=run_url, now=now
        ),
    )


def resume(ctx: Context, repo: Repo, policy: Policy | None, live: Dispatch) -> Evaluated | None:
    """`live.sha` has a dispatch already: what stands, or None if it never started.

    A run-less intent older than the lease whose run cannot be found never reached
    GitHub (or died there): the caller decides again on the fresh state, so a retry
    obeys the rate limit and supersession like any dispatch.
    """
    sha = live.sha
    if live.run_id is not None or (live.workflow is None and policy is None):
        return Evaluated(Kind.ALREADY_DISPATCHED, sha, run_id=live.run_id)
    if ctx.clock() - live.at < ctx.lease:
        return Evaluated(Kind.DISPATCH_IN_PROGRESS, sha)
    found = find_run(ctx, repo, live, policy)
    if found is not None:
        record_run(ctx, repo, live, found.id, found.html_url)
        return Evaluated(Kind.DISPATCH_RECOVERED, sha, run_id=found.id)
    return None


def dispatch_of(ctx: Context, repo: Repo, run: RunInfo, state: ReleaseState) -> Dispatch | None:
    """The dispatch `run` is the deploy of, if it provably is one of the governor's."""
    recorded = state.dispatch_of_run(run.id)
    candidates = [recorded] if recorded else [d for d in state.dispatches if d.run_id is None]
    if not candidates:
        return None
    trusted: Policy | None = None
    if any(d.workflow is None for d in candidates):  # recorded before schema 2
        trusted = read_trusted(repo, state.production_sha).governing
    bot = ctx.github.bot_login()
    for dispatch in reversed(candidates):
        if dispatch.workflow is None and trusted is None:
            continue
        workflow, branch = target(repo, dispatch, trusted)
        if is_dispatched_run(run, dispatch, workflow=workflow, ref=branch, bot_login=bot):
            return dispatch
    return None
