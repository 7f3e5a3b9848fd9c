"""Which workflow runs are the governor's own deploys. Pure.

A run-name is written by whoever starts the run, so it proves nothing on its own. A run
counts as the deploy of a dispatch when it is the run id recorded for that dispatch, or,
before that id is known, when everything an outsider cannot forge agrees: the deploy
workflow, started by `workflow_dispatch` on the deploy branch by the App's own bot user,
created after the intent was written, with the SHA in its run-name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec

from governor.state import Dispatch

CLOCK_SKEW: Final = timedelta(seconds=60)
"""GitHub's clock against ours: a run created this much before the intent still counts."""


class RunInfo(msgspec.Struct, frozen=True):
    """What the governor reads of a workflow run, from a webhook or from the REST API."""

    id: int
    attempt: int
    event: str
    path: str | None
    head_branch: str | None
    display_title: str
    created_at: datetime | None
    triggering_actor: str | None
    status: str | None
    conclusion: str | None
    html_url: str | None

    @classmethod
    def from_json(cls, run: Mapping[str, Any]) -> RunInfo:
        actor = run.get("triggering_actor")
        return cls(
            id=int(run["id"]),
            attempt=int(run.get("run_attempt") or 1),
            event=str(run.get("event") or ""),
            path=run.get("path"),
            head_branch=run.get("head_branch"),
            display_title=str(run.get("display_title") or ""),
            created_at=parse_time(run.get("created_at")),
            triggering_actor=actor.get("login") if isinstance(actor, Mapping) else None,
            status=run.get("status"),
            conclusion=run.get("conclusion"),
            html_url=run.get("html_url"),
        )


def workflow_path(workflow: str) -> str:
    return f".github/workflows/{workflow}"


def is_dispatched_run(
    run: RunInfo, dispatch: Dispatch, *, workflow: str, ref: str, bot_login: str
) -> bool:
    """True if `run` is provably the run the dispatch of `dispatch` started."""
    if dispatch.run_id is not None:
        return run.id == dispatch.run_id and _deploy_workflow(run, workflow)
    return (
        _deploy_workflow(run, workflow)
        and run.head_branch == ref
        and run.triggering_actor is not None
        and run.triggering_actor.lower() == bot_login.lower()
        and run.created_at is not None
        and run.created_at >= dispatch.at - CLOCK_SKEW
        and dispatch.sha in run.display_title
    )


def find_dispatched_run(
    runs: Iterable[RunInfo], dispatch: Dispatch, *, workflow: str, ref: str, bot_login: str
) -> RunInfo | None:
    """The run `dispatch` started, among `runs`; the oldest if several qualify."""
    found = [
        run
        for run in runs
        if is_dispatched_run(run, dispatch, workflow=workflow, ref=ref, bot_login=bot_login)
    ]
    return min(found, key=lambda run: run.id) if found else None


def _deploy_workflow(run: RunInfo, workflow: str) -> bool:
    return run.event == "workflow_dispatch" and run.path == workflow_path(workflow)


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
