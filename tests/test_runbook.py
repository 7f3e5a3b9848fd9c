"""What docs/operations.md (the runbook) promises, end to end.

As tests/test_cli_operate.py does (its helpers are used here): the commands run
in-process (`governor.cli.main`, `--json`) on the real local store, GitHub is the fake
(every request checked against GitHub's OpenAPI description), webhooks go to the
`github_webhook` function over HTTP on loopback (conftest's `local_webhook`). Where the
claim is about time passing (a freeze `--until` lifting itself), the flows run
in-process with an injected clock, and reconcile is the real `flows.reconcile.run`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from governor.cli import main
from governor.commands.jsonify import iso
from governor.events import Delivery
from governor.flows import delivery as deliveries
from governor.flows import reconcile
from governor.flows.context import Context
from governor.flows.results import to_json
from governor.github.api import GitHubApp
from governor.ledger import Ledger
from governor.store import open_store

from tests.support.cli_world import Cli
from tests.support.e2e import deployed_base, new_repo
from tests.support.fake_github import FakeGitHub
from tests.support.governed import Governed
from tests.support.world import app_for, in_process
from tests.test_cli_operate import (
    dispatch_calls,
    latest,
    local_identity,
    production_b_after_a,
    run_of,
)

# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def gov(local_gov: Governed) -> Governed:
    """conftest's `local_gov` (its `gov` is on fake-gcs-server): the commands' store."""
    return local_gov


@dataclass
class Clocked:
    """The flows in-process on a store of their own, on a clock the test moves."""

    gov: Governed
    ctx: Context
    app: GitHubApp
    now: list[datetime]

    def deliver(self, payload: dict[str, Any]) -> dict[str, Any]:
        delivered = deliveries.handle(
            self.ctx, Delivery(str(uuid.uuid4()), "workflow_run", payload)
        )
        return dict(to_json(delivered))

    def reconcile(self, at: datetime) -> dict[str, Any]:
        """One reconcile run of the repository (as `governor reconcile REPO`) at `at`."""
        self.now[0] = at
        budget = reconcile.Budget(seconds=120.0, max_repos=500, max_redeliveries=20)
        summary = reconcile.run(self.ctx, self.app, budget, only_repo=self.gov.repo.repo_id)
        return dict(summary.to_json())


@pytest.fixture
def clocked(fake: FakeGitHub, tmp_path: Path) -> Iterator[Clocked]:
    app = app_for(fake)
    url = (tmp_path / "store").as_uri()
    # The clock starts now: the command's `--until` is checked against the real clock.
    now = [datetime.now(UTC).replace(microsecond=0)]
    ctx = in_process(fake, url, now, app=app)
    yield Clocked(new_repo(fake, url, "http://unused.invalid"), ctx, app, now)
    assert fake.violations == []


def governor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(["--json", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


# -- "A freeze with `--until` lifts itself at that time, and its holds resume within 5
#     minutes" (Production is broken, 4) ------------------------------------------------


@pytest.mark.parametrize("scope", ["repo", "all"])
def test_a_freeze_until_a_time_lifts_itself_then_and_reconcile_dispatches_its_sha_once(
    clocked: Clocked, capsys: pytest.CaptureFixture[str], scope: str
) -> None:
    gov, start = clocked.gov, clocked.now[0]
    deployed_base(gov)
    until = start + timedelta(hours=1)
    target = [gov.repo.full_name] if scope == "repo" else ["--all"]
    code, out, err = governor(
        capsys,
        "--store",
        gov.store_url,
        "freeze",
        *target,
        "on",
        "--until",
        until.isoformat(),
        "--reason",
        "INC-12: checkout errors",
        "--by",
        "erin",
    )
    assert code == 0 and out["until"] == until.isoformat().replace("+00:00", "Z"), err

    sha = gov.commit("low", ["src/app.py"])
    held = clocked.deliver(gov.verified(sha))

    assert (held["decision"], held["reason"]) == ("HOLD", "freeze_window"), held
    hold = gov.state().holds[sha]
    assert (hold.reason, hold.until) == ("freeze_window", until)

    before = clocked.reconcile(until - timedelta(seconds=1))  # the last moment of the freeze

    assert before["errors"] == [], before
    assert dispatch_calls(gov) == [], "nothing is dispatched before the freeze ends"
    assert gov.state().holds[sha].reason == "freeze_window"
    assert gov.our_statuses(sha)[-1]["state"] == "failure"

    at_the_end = clocked.reconcile(until)  # nobody lifted it: it ends by itself

    assert at_the_end["errors"] == [], at_the_end
    assert [c.json["inputs"] for c in dispatch_calls(gov)] == [{"sha": sha}]
    assert [c.status for c in dispatch_calls(gov)] == [200]
    assert sha not in gov.state().holds and gov.state().dispatch_for(sha) is not None
    assert gov.our_statuses(sha)[-1]["state"] == "success"
    assert (latest(gov.store_url, gov, sha).outcome, latest(gov.store_url, gov, sha).reason) == (
        "ALLOW",
        "allow_low",
    )

    later = clocked.reconcile(until + timedelta(minutes=10))

    assert later["errors"] == [], later
    assert len(dispatch_calls(gov)) == 1, "dispatched once"
    frozen = (
        gov.state().emergency_freeze
        if scope == "repo"
        else Ledger(open_store(gov.store_url)).read_global_freeze()
    )
    assert frozen is not None and not frozen.active(until), "still recorded, no longer in force"


# -- "A run already dispatched ... goes on: cancel it in GitHub's Actions tab if it must not
#     deploy (it is then held `deploy_cancelled`)" (Production is broken, 1) ----------------


@pytest.mark.parametrize("scope", ["repo", "all"])
def test_a_run_dispatched_before_a_freeze_goes_on_and_once_cancelled_is_held_deploy_cancelled(
    gov: Governed, cli: Cli, scope: str
) -> None:
    deployed_base(gov)
    sha = gov.commit("out", ["src/app.py"])
    sent = gov.send(gov.verified(sha))
    assert sent.json()["decision"] == "ALLOW", sent.text
    run = run_of(gov, sha)
    target = [gov.repo.full_name] if scope == "repo" else ["--all"]
    try:
        code, _, err = cli("freeze", *target, "on", "--reason", "INC-13: stop", "--by", "ivy")
        assert code == 0, err

        # It goes on: the protection rule approves the governor's own run, frozen or not.
        gate = gov.send(gov.repo.protection_request_payload(run), "deployment_protection_rule")
        assert gate.status_code == 202, gate.text
        review = gov.repo.gate_review(run)
        assert review is not None and review["state"] == "approved", review
        assert gov.state().dispatch_for(sha) is not None

        cancelled = gov.send(gov.repo.complete_run(run, "cancelled"))

        assert cancelled.status_code == 202, cancelled.text
        assert cancelled.json()["result"] == "deploy_cancelled", cancelled.text
        state = gov.state()
        assert state.holds[sha].reason == "deploy_cancelled"
        assert state.dispatch_for(sha) is None and state.production_sha != sha
        status = gov.our_statuses(sha)[-1]
        assert status["state"] == "failure", status
        assert f"deploy run {run} was cancelled" in status["description"], status
        code, out, err = cli("status", gov.repo.full_name, "--sha", sha)
        assert code == 3, err
        assert (out["sha"]["state"], out["sha"]["reason"]) == ("held", "deploy_cancelled")
        assert len(dispatch_calls(gov)) == 1, "nothing dispatched it again"
    finally:
        if scope == "all":
            Ledger(open_store(gov.store_url)).set_global_freeze(None)  # the module's store


# -- "The deploy's outcome is tracked like any other: ... on failure ..." (Roll back) --------


def test_a_failed_rollback_deploy_opens_a_failure_issue_and_does_not_hold_the_next_rollback(
    gov: Governed, cli: Cli
) -> None:
    """As a failed deploy of any SHA: the failure is recorded (its cooldown starts) and the
    failure issue is opened; production stays where it was. The cooldown holds no
    rollback (a rollback's rules skip it), and the ordinary rules find the SHA older than
    production: nothing holds it `cooldown`."""
    a, b = production_b_after_a(gov)
    code, out, err = cli("rollback", gov.repo.full_name, "--reason", "INC-14: b", "--by", "kim")
    assert code == 0 and out["target"] == a, err
    run = run_of(gov, a)

    failed = gov.send(gov.repo.complete_run(run, "failure"))

    assert failed.status_code == 202, failed.text
    assert failed.json()["result"] == "deploy_failed", failed.text
    issues = [i for i in gov.repo.issues() if "pull_request" not in i]
    assert [i["title"] for i in issues] == [f"Deploy failure: {a[:7]}"]
    assert {"deploy-failure", "severity:high", "failure:failure"} <= {
        label["name"] for label in issues[0]["labels"]
    }
    state = gov.state()
    assert state.production_sha == b, "production did not move"
    failure = state.failures[a]
    assert (failure.count, failure.issue_number) == (1, issues[0]["number"])
    assert state.dispatch_for(a) is None
    code, out, err = cli("status", gov.repo.full_name, "--sha", a)
    assert code == 3 and out["sha"]["state"] == "failed", (out, err)
    assert [f["sha"] for f in out["failures"]] == [a]

    # Its verification again: older than production, superseded (rule 4), not `cooldown`.
    again = gov.send(gov.verified(a))
    assert again.json()["reason"] == "superseded", again.text
    # The operator may roll back to it again at once: the cooldown does not apply.
    code, out, err = cli("rollback", gov.repo.full_name, "--reason", "INC-14: again")
    assert code == 0, err
    assert (out["target"], out["decision_reason"], out["result"]) == (a, "rollback", "decided")
    assert [c.status for c in dispatch_calls(gov, a)] == [200, 200]


# -- "Commands that change what the gate does ... record who ... and why": lifting too ------


def test_lifting_a_freeze_or_a_degradation_records_who_lifted_it_when_and_why(
    gov: Governed, cli: Cli
) -> None:
    deployed_base(gov)
    repo = gov.repo.full_name
    for args in (["freeze", repo], ["degraded", repo]):
        code, _, err = cli(*args, "on", "--reason", "INC-15: errors", "--by", "lee")
        assert code == 0, err
    sha = gov.commit("held", ["src/app.py"])
    assert gov.send(gov.verified(sha)).json()["reason"] == "freeze_window"
    code, out, err = cli("status", repo)
    assert code == 0, err
    assert (out["freeze_lifted"], out["degraded_lifted"]) == (None, None), "nothing lifted yet"
    set_at = datetime.fromisoformat(out["emergency_freeze"]["since"])

    code, _, err = cli("freeze", repo, "off", "--reason", "INC-15 resolved", "--by", "max")
    assert code == 0, err
    code, _, err = cli(
        "degraded", repo, "off", "--reason", "error rate back to 0.1%", "--by", "nia"
    )
    assert code == 0, err

    code, out, err = cli("status", repo)
    assert code == 0, err
    assert (out["emergency_freeze"], out["degraded"]) == (None, None)
    freeze, degraded = out["freeze_lifted"], out["degraded_lifted"]
    assert {k: freeze[k] for k in ("by", "reason", "until", "lifted_by", "lifted_reason")} == {
        "by": "lee",
        "reason": "INC-15: errors",
        "until": None,
        "lifted_by": "max",
        "lifted_reason": "INC-15 resolved",
    }
    assert freeze["since"] == iso(set_at) and freeze["lifted_identity"] == local_identity()
    assert datetime.fromisoformat(freeze["lifted_at"]) >= set_at
    assert (degraded["by"], degraded["lifted_by"], degraded["lifted_reason"]) == (
        "lee",
        "nia",
        "error rate back to 0.1%",
    )
    assert datetime.fromisoformat(degraded["lifted_at"]) >= datetime.fromisoformat(
        freeze["lifted_at"]
    )

    code, _, err = cli("freeze", repo, "off", "--reason", "again", "--by", "oz")
    assert code == 0, err
    code, again, _ = cli("status", repo)
    assert again["freeze_lifted"] == freeze, "lifting nothing records nothing"

    # The SHA held under the freeze resumes, and its evaluations (taken on a state that
    # now keeps the lifts) are decided again exactly by `governor simulate`.
    code, summary, err = cli("reconcile", repo)
    assert code == 0, (summary, err)
    assert [c.json["inputs"] for c in dispatch_calls(gov)] == [{"sha": sha}]
    code, simulated, err = cli("simulate", repo, sha)
    assert code == 0, err
    assert simulated["mismatches"] == 0 and simulated["reproduced"] == 2, simulated


def test_lifting_the_freeze_of_every_repository_records_who_lifted_it_when_and_why(
    gov: Governed, cli: Cli
) -> None:
    deployed_base(gov)
    try:
        code, _, err = cli("freeze", "--all", "on", "--until", "2h", "--reason", "outage")
        assert code == 0, err
        code, _, err = cli("freeze", "--all", "off", "--reason", "region back", "--by", "pat")
        assert code == 0, err

        for args in (["status", gov.repo.full_name], ["status"]):
            code, out, err = cli(*args)
            assert code == 0, err
            assert out["global_freeze"] is None
            lifted = out["global_freeze_lifted"]
            assert (lifted["reason"], lifted["lifted_by"], lifted["lifted_reason"]) == (
                "outage",
                "pat",
                "region back",
            )
            assert lifted["until"] is not None and lifted["lifted_identity"] == local_identity()
        code, out, _ = cli("status", gov.repo.full_name)
        assert out["freeze_lifted"] is None, "the repository's own freeze was never set"
    finally:
        Ledger(open_store(gov.store_url)).set_global_freeze(None)  # the module's store
