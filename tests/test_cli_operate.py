"""`governor approve`, `rollback`, `freeze` and `degraded` end to end.

The commands run in-process (`governor.cli.main`, `--json`) and as the installed
`governor` in real subprocesses, against the real local store; GitHub is the fake (every
request checked against GitHub's OpenAPI description); webhooks go to the
`github_webhook` function served over HTTP on loopback (conftest's `local_webhook`).
The races (an operator's approval and the verification webhook at once, two rollbacks
at once, a freeze landing while a SHA is being dispatched) are arranged with barriers
and hooks (on the store's writes, on the fake's requests), never with sleeps; the ones
that need an exact interleaving run the flows in-process, as tests/test_flows.py does.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from governor.commands.jsonify import iso
from governor.decision import Reason
from governor.events import Delivery
from governor.flows import approval, emergency
from governor.flows import delivery as deliveries
from governor.flows import rollback as rollback_flow
from governor.flows.context import Context, Repo
from governor.flows.results import Evaluated, to_json
from governor.github.api import GitHubApp, RepoApi
from governor.ledger import DecisionRecord, Evaluation, Ledger, state_key
from governor.policy import POLICY_PATH
from governor.settings import AppSettings
from governor.state import EmergencyFreeze, ReleaseState, deploy_failed
from governor.store import Generation, ObjectStore, Precondition, StoredObject, open_store

from tests.support.cli_world import Cli
from tests.support.e2e import APP_ID, deployed_base, function_env, new_repo
from tests.support.fake_github import Call, FakeGitHub
from tests.support.governed import BASE_POLICY, DEPLOY_FILE, Governed, sha_for
from tests.support.keys import rsa_key_pair

GOVERNOR = str(Path(sys.executable).with_name("governor"))
WAIT_S = 60
"""How long a barrier or a hook waits for the other side before the test fails."""


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def gov(local_gov: Governed) -> Governed:
    """conftest's `local_gov` (its `gov` is on fake-gcs-server): the commands' store."""
    return local_gov


def subprocess_env(fake: FakeGitHub, store_url: str) -> dict[str, str]:
    """The installed command's environment: the App's settings and nothing else of ours.
    GitHub's timeout is long, so a request a hook holds at the fake is not given up on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNOR_")}
    return {**env, **function_env(fake, store_url, GOVERNOR_GITHUB_TIMEOUT_S="30")}


def governor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GOVERNOR, "--json", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


def local_identity() -> str:
    """What the local store says its credentials belong to."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def snapshot(store_url: str) -> dict[str, str]:
    """Every key of the store with its generation: equal snapshots, nothing written."""
    store = open_store(store_url)
    found = {}
    for key in store.list():
        current = store.get(key)
        assert current is not None
        found[key] = str(current.generation)
    return found


def dispatch_calls(gov: Governed, sha: str | None = None) -> list[Call]:
    """Every dispatch request the fake got for the repository (answered or not)."""
    return [
        c
        for c in gov.fake.calls_to("actions/create-workflow-dispatch")
        if f"/repos/{gov.repo.full_name}/" in c.path
        and (sha is None or (c.json or {}).get("inputs") == {"sha": sha})
    ]


def run_of(gov: Governed, sha: str) -> int:
    runs = [r for r in gov.repo.dispatched_runs(DEPLOY_FILE) if r["inputs"] == {"sha": sha}]
    assert len(runs) == 1, runs
    return int(runs[0]["id"])


def decision(store_url: str, gov: Governed, sha: str) -> DecisionRecord:
    record = Ledger(open_store(store_url)).read_decision(gov.repo.repo_id, sha)
    assert record is not None
    return record


def latest(store_url: str, gov: Governed, sha: str) -> Evaluation:
    evaluation = decision(store_url, gov, sha).latest
    assert evaluation is not None
    return evaluation


def deploy(gov: Governed, sha: str) -> None:
    """Verified, dispatched, and its deploy run succeeded: production is `sha`."""
    verified = gov.send(gov.verified(sha))
    assert verified.status_code == 202 and verified.json()["decision"] == "ALLOW", verified.text
    done = gov.send(gov.repo.complete_run(run_of(gov, sha), "success"))
    assert done.status_code == 202 and done.json()["result"] == "deployed", done.text


def production_b_after_a(gov: Governed, policy: str = BASE_POLICY) -> tuple[str, str]:
    """A in production (the first deploy), then B deployed through the webhook."""
    a = deployed_base(gov, policy)
    b = gov.commit("b", ["src/app.py"], policy=policy)
    deploy(gov, b)
    state = gov.state()
    assert (state.production_sha, state.production_previous_sha) == (b, a)
    return a, b


def on_a_branch(gov: Governed, label: str, files: list[str]) -> str:
    """A commit on branch `feature`, never on the default branch."""
    sha = sha_for(f"{gov.repo.full_name}:{label}")
    gov.repo.add_commit(
        sha,
        files=[{"filename": f, "status": "modified"} for f in files],
        parent=gov.repo.tip(),
        branch="feature",
    )
    gov.repo.set_file(POLICY_PATH, BASE_POLICY, ref=sha)
    return sha


# -- approve -------------------------------------------------------------------------------


def test_approve_dispatches_a_held_high_risk_sha_once_and_records_who_and_why(
    gov: Governed, cli: Cli
) -> None:
    deployed_base(gov)
    sha = gov.commit("risky", ["infra/main.tf"])
    held = gov.send(gov.verified(sha))
    assert held.json()["reason"] == "high_risk_no_approval", held.text
    assert dispatch_calls(gov) == []
    why = "hotfix for INC-42, reviewed by bob"

    code, out, err = cli("approve", gov.repo.full_name, sha, "--reason", why, "--by", "alice")

    assert code == 0, err
    assert (out["repo"], out["sha"], out["by"], out["reason"]) == (
        gov.repo.full_name,
        sha,
        "alice",
        why,
    )
    assert out["identity"] == local_identity()
    assert (out["outcome"], out["decision_reason"], out["result"]) == (
        "ALLOW",
        "allow_high_approved",
        "decided",
    )
    assert out["detail"] == "high-risk change approved by alice"
    assert [c.status for c in dispatch_calls(gov, sha)] == [200]
    assert len(dispatch_calls(gov)) == 1
    status = gov.our_statuses(sha)[-1]
    assert status["state"] == "success" and "allow_high_approved" in status["description"]
    state = gov.state()
    assert sha not in state.holds
    live = state.dispatch_for(sha)
    assert live is not None and live.run_id == run_of(gov, sha)
    [approved] = state.approvals_for(sha)
    assert (approved.via, approved.by, approved.reason, approved.identity) == (
        "cli",
        "alice",
        why,
        local_identity(),
    )
    evaluation = latest(gov.store_url, gov, sha)
    assert (evaluation.trigger, evaluation.reason) == ("approval:cli", "allow_high_approved")

    # Again, by the numeric id and a prefix, as text: on its way already, not sent again.
    code, text, err = cli.text(
        "approve", str(gov.repo.repo_id), sha[:8], "--reason", "again", "--by", "alice"
    )
    assert code == 0, err
    assert f"{gov.repo.full_name} {sha}: approved by alice (again)" in text
    assert f"store credentials: {local_identity()}" in text
    assert "now: already dispatched" in text
    assert len(dispatch_calls(gov)) == 1


def test_approve_of_a_sha_held_by_an_emergency_freeze_exits_3_with_the_reason(
    gov: Governed, cli: Cli
) -> None:
    deployed_base(gov)
    code, _, err = cli(
        "freeze", gov.repo.full_name, "on", "--reason", "INC-1: checkout down", "--by", "bob"
    )
    assert code == 0, err
    sha = gov.commit("frozen", ["infra/main.tf"])
    assert gov.send(gov.verified(sha)).json()["reason"] == "freeze_window"

    code, out, err = cli("approve", gov.repo.full_name, sha, "--reason", "urgent", "--by", "al")

    assert code == 3, err
    assert (out["outcome"], out["decision_reason"]) == ("HOLD", "freeze_window")
    assert out["detail"] == "emergency freeze by bob: INC-1: checkout down"
    code, text, _ = cli.text("approve", gov.repo.full_name, sha, "--reason", "still", "--by", "al")
    assert code == 3
    assert "now HOLD freeze_window: emergency freeze by bob: INC-1: checkout down" in text
    assert dispatch_calls(gov) == []
    assert gov.state().holds[sha].reason == "freeze_window"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--reason", ""),
        ("--reason", " \t "),
        ("--reason", "INC-1 \x1b[31mred"),
        ("--reason", "ring \x07"),
        ("--reason", "x" * 301),
        ("--by", "eve\x1b]0;title\x07"),
        ("--by", ""),
    ],
    ids=["empty", "blank", "escape", "bell", "too-long", "by-escape", "by-empty"],
)
def test_approve_with_a_bad_reason_or_name_exits_2_and_writes_nothing(
    gov: Governed, cli: Cli, option: str, value: str
) -> None:
    deployed_base(gov)
    sha = gov.commit("bad-words", ["infra/main.tf"])
    gov.send(gov.verified(sha))
    before = snapshot(gov.store_url)
    args = {"--reason": "fine", "--by": "alice", option: value}

    code, out, err = cli(
        "approve", gov.repo.full_name, sha, *(x for kv in args.items() for x in kv)
    )

    assert code == 2 and out is None
    assert option in err
    assert snapshot(gov.store_url) == before
    assert dispatch_calls(gov) == [] and gov.state().approvals_for(sha) == ()


def test_approve_of_a_sha_not_on_the_default_branch_exits_1(gov: Governed, cli: Cli) -> None:
    deployed_base(gov)
    sha = on_a_branch(gov, "feature", ["infra/main.tf"])

    code, out, err = cli("approve", gov.repo.full_name, sha, "--reason", "ship it", "--by", "al")

    assert code == 1, err
    assert out["result"] == "ignored" and out["outcome"] is None
    assert "is not on refs/heads/main" in out["detail"]
    assert dispatch_calls(gov) == [] and gov.our_statuses(sha) == []
    assert gov.state().approvals_for(sha) == (), "nothing recorded for a SHA that cannot ship"
    # As text, the installed command says so too.
    env = subprocess_env(gov.fake, gov.store_url)
    done = subprocess.run(
        [GOVERNOR, "approve", gov.repo.full_name, sha, "--reason", "ship it", "--by", "al"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "not evaluated:" in done.stdout and "is not on refs/heads/main" in done.stdout


APPROVERS = 6


def test_approvals_and_their_verification_webhooks_at_once_dispatch_each_sha_once(
    fake: FakeGitHub, local_store_url: str, local_webhook: str
) -> None:
    """Each operator's `governor approve` (a real process) and the SHA's verification
    webhook start at the same moment: whichever gets there first, the SHA is dispatched
    once, its approval is kept, it is not left held, and its last status is success."""
    env = subprocess_env(fake, local_store_url)
    govs = [new_repo(fake, local_store_url, local_webhook) for _ in range(APPROVERS)]
    shas = []
    for g in govs:  # one SHA per repository: a newer SHA of the same one would supersede it
        deployed_base(g)
        shas.append(g.commit("risky", ["infra/main.tf", "src/app.py"]))
    payloads = [g.verified(sha) for g, sha in zip(govs, shas, strict=True)]
    start = threading.Barrier(2 * APPROVERS)

    def approve(i: int) -> subprocess.CompletedProcess[str]:
        start.wait(timeout=WAIT_S)
        return governor(
            env,
            "approve",
            govs[i].repo.full_name,
            shas[i],
            "--reason",
            f"INC-{i}",
            "--by",
            f"op{i}",
        )

    def verify(i: int) -> httpx.Response:
        start.wait(timeout=WAIT_S)
        return govs[i].send(payloads[i])

    with ThreadPoolExecutor(max_workers=2 * APPROVERS) as pool:
        approvals = [pool.submit(approve, i) for i in range(APPROVERS)]
        answers = [pool.submit(verify, i) for i in range(APPROVERS)]
        done = [f.result() for f in approvals]
        answered = [f.result() for f in answers]

    for i, (g, sha) in enumerate(zip(govs, shas, strict=True)):
        assert done[i].returncode == 0, (i, done[i].stdout, done[i].stderr)
        out = json.loads(done[i].stdout)
        assert out["result"] in {"decided", "already_dispatched", "dispatch_in_progress"}, out
        assert out["outcome"] in (None, "ALLOW"), out
        assert answered[i].status_code in (200, 202), answered[i].text
        assert len(dispatch_calls(g)) == 1, (i, dispatch_calls(g))
        assert [c.status for c in dispatch_calls(g, sha)] == [200]
        state = g.state()
        assert sha not in state.holds, (i, state.holds)
        live = state.dispatch_for(sha)
        assert live is not None and live.run_id == run_of(g, sha)
        assert [(a.via, a.by, a.reason) for a in state.approvals_for(sha)] == [
            ("cli", f"op{i}", f"INC-{i}")
        ]
        assert g.our_statuses(sha)[-1]["state"] == "success", (i, g.our_statuses(sha))
    assert fake.violations == []


# -- rollback ------------------------------------------------------------------------------


def test_rollback_dispatches_the_previous_sha_once_and_its_run_moves_production_back(
    gov: Governed, cli: Cli
) -> None:
    a, b = production_b_after_a(gov)
    why = "INC-7: b breaks checkout"

    code, out, err = cli("rollback", gov.repo.full_name, "--reason", why, "--by", "carol")

    assert code == 0, err
    assert (out["target"], out["from_sha"], out["by"], out["reason"]) == (a, b, "carol", why)
    assert (out["outcome"], out["decision_reason"], out["result"]) == (
        "ALLOW",
        "rollback",
        "decided",
    )
    assert out["forced"] is False and out["identity"] == local_identity()
    run = run_of(gov, a)
    assert out["run_id"] == run
    assert [(c.status, c.json["inputs"]) for c in dispatch_calls(gov, a)] == [(200, {"sha": a})]
    assert len(dispatch_calls(gov)) == 2  # b's deploy, then the rollback
    status = gov.our_statuses(a)[-1]
    assert status["state"] == "success" and "rollback" in status["description"]
    evaluation = latest(gov.store_url, gov, a)
    assert (evaluation.trigger, evaluation.outcome, evaluation.reason) == (
        "rollback",
        "ALLOW",
        "rollback",
    )
    assert evaluation.inputs["from_sha"] == b and evaluation.inputs["by"] == "carol"
    assert evaluation.inputs["why"] == why and evaluation.inputs["forced"] is False
    assert evaluation.inputs["identity"] == local_identity()
    live = gov.state().dispatch_for(a)
    assert live is not None and (live.run_id, live.reason) == (run, "rollback")

    # GitHub asks the protection rule before the deploy job: the rollback's run is ours.
    gate = gov.send(gov.repo.protection_request_payload(run), "deployment_protection_rule")
    assert gate.status_code == 202, gate.text
    review = gov.repo.gate_review(run)
    assert review is not None and review["state"] == "approved", review
    completed = gov.send(gov.repo.complete_run(run, "success"))

    assert completed.status_code == 202 and completed.json()["result"] == "deployed"
    state = gov.state()
    assert (state.production_sha, state.production_previous_sha) == (a, b)
    assert len(dispatch_calls(gov)) == 2


def test_rollback_to_a_sha_never_in_production_or_with_nothing_before_exits_3_writing_nothing(
    gov: Governed, cli: Cli, fake: FakeGitHub, local_store_url: str, local_webhook: str
) -> None:
    _a, b = production_b_after_a(gov)
    never = gov.commit("never", ["src/never.py"])
    before, sent = snapshot(gov.store_url), len(dispatch_calls(gov))

    code, out, err = cli("rollback", gov.repo.full_name, "--to", never, "--reason", "x")
    assert code == 3 and out is None, err
    assert f"{never[:7]} has not been in production" in err
    code, _, err = cli("rollback", gov.repo.full_name, "--to", b, "--reason", "x")
    assert code == 3 and "is in production already" in err

    assert snapshot(gov.store_url) == before
    assert len(dispatch_calls(gov)) == sent and dispatch_calls(gov, never) == []
    assert gov.our_statuses(never) == []

    only = new_repo(fake, local_store_url, local_webhook)
    deployed_base(only)
    before = snapshot(gov.store_url)
    code, out, err = cli("rollback", only.repo.full_name, "--reason", "x")
    assert code == 3 and out is None
    assert "has had one SHA in production only: there is nothing before it" in err
    assert snapshot(gov.store_url) == before and dispatch_calls(only) == []


def test_rollback_is_held_by_an_emergency_freeze_unless_forced_and_forcing_is_recorded(
    gov: Governed, cli: Cli
) -> None:
    a, _b = production_b_after_a(gov)
    code, _, err = cli(
        "freeze", gov.repo.full_name, "on", "--reason", "INC-9: hands off", "--by", "dave"
    )
    assert code == 0, err
    before = snapshot(gov.store_url)
    why = "INC-9: b is broken"

    code, text, err = cli.text("rollback", gov.repo.full_name, "--reason", why, "--by", "carol")

    assert code == 3, err
    assert "HOLD freeze_window: emergency freeze by dave: INC-9: hands off" in text
    assert "add --force" in text
    code, out, _ = cli("rollback", gov.repo.full_name, "--reason", why, "--by", "carol")
    assert code == 3 and out["decision_reason"] == "freeze_window" and out["run_id"] is None
    assert snapshot(gov.store_url) == before, "a held rollback writes nothing"
    assert dispatch_calls(gov, a) == []

    code, out, err = cli(
        "rollback", gov.repo.full_name, "--force", "--reason", why, "--by", "carol"
    )

    assert code == 0, err
    assert out["forced"] is True and out["decision_reason"] == "rollback"
    assert "forced through a freeze: emergency freeze by dave: INC-9: hands off" in out["detail"]
    assert [c.status for c in dispatch_calls(gov, a)] == [200]
    evaluation = latest(gov.store_url, gov, a)
    assert evaluation.trigger == "rollback" and evaluation.inputs["forced"] is True
    assert "forced through a freeze" in (evaluation.detail or "")
    assert gov.state().emergency_freeze is not None, "forcing does not lift the freeze"


def test_neither_cooldown_nor_the_rate_limit_holds_a_rollback(gov: Governed, cli: Cli) -> None:
    policy = BASE_POLICY + "max_deploys_per_hour: 1\ncooldown_minutes: 60\n"
    a, _b = production_b_after_a(gov, policy)  # b's deploy is the hour's one
    c = gov.commit("c", ["src/c.py"], policy=policy)
    assert gov.send(gov.verified(c)).json()["reason"] == "rate_limit"
    now = datetime.now(UTC)  # and a failed to deploy a moment ago: it would cool down
    Ledger(open_store(gov.store_url)).transition(
        gov.repo.repo_id,
        gov.repo.full_name,
        lambda s: deploy_failed(s, a, "failure", now, run="1-1"),
    )
    assert a in gov.state().failures

    code, out, err = cli("rollback", gov.repo.full_name, "--reason", "back to a", "--by", "carol")

    assert code == 0, err
    assert (out["target"], out["decision_reason"]) == (a, "rollback")
    assert [c.status for c in dispatch_calls(gov, a)] == [200]
    live = gov.state().dispatch_for(a)
    assert live is not None and live.run_id == run_of(gov, a)


def test_two_rollbacks_to_the_same_sha_at_once_dispatch_once_and_both_exit_0(
    gov: Governed, cli: Cli
) -> None:
    """Two operators' `governor rollback` (real processes) at once. GitHub holds the first
    dispatch request until the other process has finished, so the other one is sure to
    find the first one's rollback on its way rather than dispatch again."""
    a, _b = production_b_after_a(gov)
    env = subprocess_env(gov.fake, gov.store_url)
    finished = threading.Event()

    def hold_the_request(_call: Call) -> None:
        finished.wait(timeout=WAIT_S)

    gov.fake.on_request("actions/create-workflow-dispatch", hold_the_request)
    start = threading.Barrier(2)

    def roll_back(i: int) -> subprocess.CompletedProcess[str]:
        start.wait(timeout=WAIT_S)
        try:
            return governor(
                env, "rollback", gov.repo.full_name, "--reason", f"INC-{i}", "--by", f"op{i}"
            )
        finally:
            finished.set()

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            done = list(pool.map(roll_back, range(2)))
    finally:
        finished.set()  # a hook left behind answers at once

    assert [d.returncode for d in done] == [0, 0], [d.stderr for d in done]
    outs = [json.loads(d.stdout) for d in done]
    assert sorted(o["result"] for o in outs) == ["decided", "dispatch_in_progress"], outs
    assert {(o["target"], o["outcome"]) for o in outs} == {(a, "ALLOW")}
    assert [c.status for c in dispatch_calls(gov, a)] == [200]

    code, out, err = cli("rollback", gov.repo.full_name, "--reason", "again", "--by", "op2")
    assert code == 0, err
    assert out["result"] == "already_dispatched" and out["run_id"] == run_of(gov, a)
    assert len(dispatch_calls(gov, a)) == 1


# -- freeze --------------------------------------------------------------------------------


@pytest.mark.parametrize("until", [None, "4h"], ids=["no-end", "until-4h"])
def test_a_repository_freeze_holds_a_low_sha_and_once_lifted_reconcile_dispatches_it(
    gov: Governed, cli: Cli, until: str | None
) -> None:
    """Lifted by hand, before its end if it has one: reconcile decides its SHAs again."""
    deployed_base(gov)
    why = "INC-3: errors up"
    ends = ["--until", until] if until else []

    code, out, err = cli("freeze", gov.repo.full_name, "on", *ends, "--reason", why, "--by", "erin")

    assert code == 0, err
    frozen = gov.state().emergency_freeze
    assert frozen is not None and (frozen.by, frozen.reason) == ("erin", why)
    assert out == {
        "what": "freeze",
        "scope": gov.repo.full_name,
        "on": True,
        "changed": True,
        "by": "erin",
        "identity": local_identity(),
        "reason": why,
        "until": iso(frozen.until),
        "held": [],
    }
    assert (frozen.until is None) == (until is None)
    sha = gov.commit("low", ["src/app.py"])
    held = gov.send(gov.verified(sha))
    assert (held.json()["decision"], held.json()["reason"]) == ("HOLD", "freeze_window")
    status = gov.our_statuses(sha)[-1]
    assert status["state"] == "failure"
    assert f"emergency freeze by erin: {why}" in status["description"]
    hold = gov.state().holds[sha]
    assert (hold.reason, hold.until) == ("freeze_window", frozen.until)

    code, out, err = cli(
        "freeze", gov.repo.full_name, "off", "--reason", "resolved", "--by", "erin"
    )

    assert code == 0, err
    assert (out["on"], out["changed"], out["held"]) == (False, True, [sha])
    assert gov.state().emergency_freeze is None
    assert dispatch_calls(gov) == [], "lifting dispatches nothing by itself"
    code, summary, err = cli("reconcile", gov.repo.full_name)
    assert code == 0, (summary, err)
    assert [c.json["inputs"] for c in dispatch_calls(gov)] == [{"sha": sha}]
    assert gov.our_statuses(sha)[-1]["state"] == "success"
    assert sha not in gov.state().holds


def test_a_freeze_of_every_repository_holds_another_repository_s_sha_until_lifted(
    gov: Governed, cli: Cli
) -> None:
    deployed_base(gov)
    why = "INC-4: region outage"
    asked_at = datetime.now(UTC)
    try:
        code, out, err = cli(
            "freeze", "--all", "on", "--until", "2h", "--reason", why, "--by", "fay"
        )
        assert code == 0, err
        assert (out["scope"], out["on"], out["changed"], out["by"]) == ("all", True, True, "fay")
        until = datetime.fromisoformat(out["until"])
        assert abs(until - (asked_at + timedelta(hours=2))) < timedelta(minutes=5)
        everywhere = Ledger(open_store(gov.store_url)).read_global_freeze()
        assert everywhere is not None and everywhere.until == until
        assert gov.state().emergency_freeze is None  # this repository was never named

        sha = gov.commit("low", ["src/app.py"])
        held = gov.send(gov.verified(sha))
        assert held.json()["reason"] == "freeze_window", held.text
        detail = f"emergency freeze of every repository by fay: {why}"
        assert latest(gov.store_url, gov, sha).detail == detail
        assert detail in gov.our_statuses(sha)[-1]["description"]
        assert gov.state().holds[sha].until == until
        assert dispatch_calls(gov) == []

        code, out, err = cli("freeze", "--all", "off", "--reason", "over", "--by", "fay")
        assert code == 0, err
        assert (out["scope"], out["on"], out["changed"]) == ("all", False, True)
        assert f"{gov.repo.full_name}@{sha}" in out["held"]
    finally:
        Ledger(open_store(gov.store_url)).set_global_freeze(None)  # the store is the module's

    code, summary, err = cli("reconcile", gov.repo.full_name)
    assert code == 0, (summary, err)
    assert [c.json["inputs"] for c in dispatch_calls(gov)] == [{"sha": sha}]
    assert gov.our_statuses(sha)[-1]["state"] == "success"


@pytest.mark.parametrize(
    "args",
    [
        ["on", "--until", "2020-01-01T00:00Z"],  # past
        ["on", "--until", "2030-06-01T12:00"],  # no zone
        ["on", "--until", "tomorrow"],
        ["on", "--until", "0h"],
        ["on", "--until", "91d"],  # over 90 days
        ["off", "--until", "2h"],  # --until goes with on
    ],
    ids=["past", "no-zone", "garbage", "zero", "too-far", "off-until"],
)
@pytest.mark.parametrize("scope", ["repo", "all"])
def test_freeze_with_a_bad_until_exits_2_and_writes_nothing(
    gov: Governed, cli: Cli, args: list[str], scope: str
) -> None:
    deployed_base(gov)
    before = snapshot(gov.store_url)
    target = [gov.repo.full_name] if scope == "repo" else ["--all"]

    code, out, err = cli("freeze", *target, *args, "--reason", "x", "--by", "fay")

    assert code == 2 and out is None
    assert "--until" in err
    assert snapshot(gov.store_url) == before


def test_freeze_needs_a_repository_or_all_and_a_known_repository(gov: Governed, cli: Cli) -> None:
    deployed_base(gov)
    before = snapshot(gov.store_url)
    code, _, err = cli("freeze", "--all", gov.repo.full_name, "on", "--reason", "x")
    assert code == 2 and "give REPO or --all" in err
    with pytest.raises(SystemExit) as usage:  # argparse takes the REPO for the switch
        cli("freeze", gov.repo.full_name, "--all", "on", "--reason", "x")
    assert usage.value.code == 2
    code, _, err = cli("freeze", "octo/never-seen", "on", "--reason", "x")
    assert code == 1 and "unknown repository" in err
    code, _, err = cli("degraded", "octo/never-seen", "on", "--reason", "x")
    assert code == 1 and "unknown repository" in err
    assert snapshot(gov.store_url) == before


# -- degraded ------------------------------------------------------------------------------


def test_degraded_holds_a_medium_sha_and_once_taken_back_reconcile_dispatches_it(
    gov: Governed, cli: Cli
) -> None:
    deployed_base(gov)
    why = "INC-5: error rate 5%"

    code, out, err = cli("degraded", gov.repo.full_name, "on", "--reason", why, "--by", "gus")

    assert code == 0, err
    assert (out["what"], out["scope"], out["on"], out["changed"]) == (
        "degraded",
        gov.repo.full_name,
        True,
        True,
    )
    assert (out["by"], out["reason"], out["identity"]) == ("gus", why, local_identity())
    declared = gov.state().degraded
    assert declared is not None and (declared.by, declared.reason) == ("gus", why)
    low = gov.commit("fix", ["src/fix.py"])
    assert gov.send(gov.verified(low)).json()["reason"] == "allow_low"  # a fix still goes out
    medium = gov.commit("deps", ["requirements.txt"])  # a default medium_risk_paths pattern
    held = gov.send(gov.verified(medium))
    assert (held.json()["decision"], held.json()["reason"]) == ("HOLD", "degraded_medium_hold")
    assert gov.our_statuses(medium)[-1]["state"] == "failure"
    assert dispatch_calls(gov, medium) == []

    code, out, err = cli("degraded", gov.repo.full_name, "off", "--reason", "fine", "--by", "gus")

    assert code == 0, err
    assert (out["on"], out["changed"], out["held"]) == (False, True, [medium])
    assert gov.state().degraded is None
    assert dispatch_calls(gov, medium) == []
    code, summary, err = cli("reconcile", gov.repo.full_name)
    assert code == 0, (summary, err)
    assert [c.status for c in dispatch_calls(gov, medium)] == [200]
    assert gov.our_statuses(medium)[-1]["state"] == "success"


# -- help ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("approve", ["Exit 0 if the SHA is now allowed", "3 if it is still held", "1 if it"]),
        ("rollback", ["Exit 0 dispatched", "3 held or not allowed", "1 GitHub refused"]),
        ("freeze", ["Exit 0."]),
        ("degraded", ["Exit 0."]),
    ],
)
def test_every_operator_command_s_help_states_its_exit_codes(command: str, says: list[str]) -> None:
    helped = subprocess.run(
        [GOVERNOR, command, "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert helped.returncode == 0, helped.stderr
    text = " ".join(helped.stdout.split())  # argparse wraps lines
    assert "Exit status: 0 ok; 1 error or not found; 2 usage or configuration; 3 held" in text
    for words in says:
        assert words in text, (words, text)


# -- in-process: a freeze landing while a SHA is being dispatched ----------------------------


class HookedStore:
    """The local store, calling each of `after_put` once a write is done (and only then)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.write_timeout_s = inner.write_timeout_s
        self.after_put: list[Callable[[str, bytes], None]] = []

    def get(self, key: str) -> StoredObject | None:
        return self.inner.get(key)

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_generation_match: Precondition,
        timeout_s: float | None = None,
    ) -> Generation:
        generation = self.inner.put(
            key, data, if_generation_match=if_generation_match, timeout_s=timeout_s
        )
        for hook in list(self.after_put):
            hook(key, data)
        return generation

    def delete(self, key: str, *, if_generation_match: Generation | None = None) -> None:
        self.inner.delete(key, if_generation_match=if_generation_match)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)


class _GatedApi:
    """A RepoApi that asks `before_status` before each commit status it posts."""

    def __init__(self, api: RepoApi, port: Port) -> None:
        self._api, self._port = api, port

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    def create_status(self, sha: str, **fields: Any) -> None:
        if self._port.before_status is not None:
            self._port.before_status(sha, str(fields["state"]))
        self._api.create_status(sha, **fields)


@dataclass
class Port:
    app: GitHubApp
    bot: str
    before_status: Callable[[str, str], None] | None = None

    def repo(self, installation_id: int, full_name: str) -> RepoApi:
        return _GatedApi(self.app.repo(installation_id, full_name), self)  # type: ignore[return-value]

    def bot_login(self) -> str:
        return self.bot


@dataclass
class World:
    gov: Governed
    ctx: Context
    store: HookedStore
    port: Port
    repo: Repo
    other: Ledger = field(init=False)
    """Another governor (an operator's command) on the same store, not hooked."""

    def __post_init__(self) -> None:
        self.other = Ledger(self.store.inner)

    def deliver(self, payload: dict[str, Any]) -> dict[str, Any]:
        delivered = deliveries.handle(
            self.ctx, Delivery(str(uuid.uuid4()), "workflow_run", payload)
        )
        return to_json(delivered)

    def state(self) -> ReleaseState:
        return self.ctx.ledger.read_state(self.repo.id, self.repo.full_name)

    def freeze(self, scope: str, by: str, why: str) -> None:
        """What `governor freeze REPO on` (or `--all on`) writes, from another process."""
        now = datetime.now(UTC)
        frozen = EmergencyFreeze(reason=why, by=by, at=now)
        if scope == "repo":
            emergency.freeze_repo(self.other, self.repo.id, self.repo.full_name, frozen, now)
        else:
            emergency.freeze_all(self.other, frozen, now)

    def after_intent(self, sha: str, then: Callable[[], None]) -> list[str]:
        """Call `then` once, right after the state write that records a run-less dispatch
        intent of `sha`; returns the intent ids it fired on (one, once it has)."""
        fired: list[str] = []
        key = state_key(self.repo.id)

        def hook(written: str, data: bytes) -> None:
            if fired or written != key:
                return
            live = ReleaseState.model_validate_json(data).dispatch_for(sha)
            if live is not None and live.run_id is None:
                fired.append(live.intent_id)
                then()

        self.store.after_put.append(hook)
        return fired


@pytest.fixture
def world(fake: FakeGitHub, tmp_path: Path) -> Iterator[World]:
    """The flows in-process on their own local store, GitHub the fake, the clock real."""
    private, _public = rsa_key_pair()
    app = GitHubApp(fake.url, APP_ID, private, timeout_s=10)
    url = (tmp_path / "store").as_uri()
    store = HookedStore(open_store(url))
    port = Port(app, fake.bot_login)
    settings = AppSettings(store_url=url, webhook_secret="s" * 32)
    ctx = Context(
        settings, Ledger(store), port, lambda: datetime.now(UTC), lease=timedelta(seconds=120)
    )
    gov = new_repo(fake, url, "http://unused.invalid")
    r = gov.repo
    repo = Repo(
        r.repo_id,
        r.full_name,
        r.default_branch,
        r.installation_id,
        port.repo(r.installation_id, r.full_name),
    )
    yield World(gov, ctx, store, port, repo)
    assert fake.violations == []


SCOPES = ["repo", "all"]
EVERY = {"repo": "", "all": " of every repository"}


@pytest.mark.parametrize("scope", SCOPES)
def test_a_freeze_set_right_after_the_dispatch_intent_holds_the_sha_and_nothing_is_sent(
    world: World, scope: str
) -> None:
    deployed_base(world.gov)
    sha = world.gov.commit("caught", ["src/app.py"])
    fired = world.after_intent(sha, lambda: world.freeze(scope, "hal", "INC-8: stop"))

    result = world.deliver(world.gov.verified(sha))

    assert fired, "the freeze was set after the intent was written"
    assert (result["decision"], result["reason"]) == ("HOLD", "freeze_window"), result
    assert dispatch_calls(world.gov) == [], "no dispatch request reached GitHub"
    state = world.state()
    assert state.dispatch_for(sha) is None
    assert all(d.intent_id != fired[0] for d in state.dispatches), "the intent is dropped"
    hold = state.holds[sha]
    assert (hold.reason, hold.until) == ("freeze_window", None)
    status = world.gov.our_statuses(sha)[-1]
    assert status["state"] == "failure"
    assert f"emergency freeze{EVERY[scope]} by hal: INC-8: stop" in status["description"]
    record = world.ctx.ledger.read_decision(world.repo.id, sha)
    assert record is not None and record.latest is not None
    assert record.latest.reason == "freeze_window"


@pytest.mark.parametrize("scope", SCOPES)
def test_a_freeze_that_lands_once_the_dispatch_is_at_github_does_not_stop_it_but_holds_the_next(
    world: World, scope: str
) -> None:
    deployed_base(world.gov)
    first = world.gov.commit("sent", ["src/app.py"])
    world.gov.fake.on_request(
        "actions/create-workflow-dispatch", lambda _call: world.freeze(scope, "ida", "INC-9")
    )

    sent = world.deliver(world.gov.verified(first))

    assert (sent["decision"], sent["reason"]) == ("ALLOW", "allow_low"), sent
    assert [d["inputs"] for d in world.gov.dispatches()] == [{"sha": first}]
    assert len(world.gov.repo.dispatched_runs(DEPLOY_FILE)) == 1
    frozen = world.state().emergency_freeze or world.ctx.ledger.read_global_freeze()
    assert frozen is not None, "the freeze landed while GitHub had the request"
    live = world.state().dispatch_for(first)
    assert live is not None and live.run_id is not None
    assert world.gov.our_statuses(first)[-1]["state"] == "success"

    second = world.gov.commit("next", ["src/next.py"])
    held = world.deliver(world.gov.verified(second))

    assert (held["decision"], held["reason"]) == ("HOLD", "freeze_window"), held
    assert len(world.gov.dispatches()) == 1
    assert (
        f"emergency freeze{EVERY[scope]} by ida"
        in world.gov.our_statuses(second)[-1]["description"]
    )


@pytest.mark.parametrize("scope", SCOPES)
def test_a_freeze_set_right_after_a_rollback_s_intent_holds_it_and_leaves_nothing_behind(
    world: World, scope: str
) -> None:
    a = deployed_base(world.gov)
    b = world.gov.commit("b", ["src/app.py"])
    world.gov.in_production(b)
    fired = world.after_intent(a, lambda: world.freeze(scope, "jo", "INC-10"))
    request = rollback_flow.RollbackRequest(None, "carol", "b is broken", False, "carol@host")

    done = rollback_flow.rollback(world.ctx, world.repo, request)

    assert fired
    assert not done.allowed and done.decision.reason is Reason.FREEZE_WINDOW
    assert f"emergency freeze{EVERY[scope]} by jo: INC-10" in done.decision.detail
    assert dispatch_calls(world.gov) == []
    state = world.state()
    assert state.dispatch_for(a) is None and state.production_sha == b
    # Held, the rollback is asked for again (as every held rollback): it leaves no hold
    # for reconcile to resume as an ordinary SHA (older than production: superseded).
    assert a not in state.holds, state.holds


def test_a_hold_status_posted_late_does_not_outlast_an_operator_s_approval_that_dispatched(
    world: World,
) -> None:
    """The webhook has written its hold (no approval yet) and is about to post its
    `failure` status; meanwhile the operator's approval dispatches the SHA and posts
    `success`. Then the webhook's status lands: the last word must be the dispatch's."""
    deployed_base(world.gov)
    sha = world.gov.commit("race", ["infra/main.tf"])
    held_written, approved = threading.Event(), threading.Event()
    webhook = "verification-webhook"

    def gate(_sha: str, state: str) -> None:
        if threading.current_thread().name == webhook and state == "failure":
            held_written.set()
            approved.wait(timeout=WAIT_S)

    world.port.before_status = gate
    answers: list[dict[str, Any]] = []
    thread = threading.Thread(
        target=lambda: answers.append(world.deliver(world.gov.verified(sha))), name=webhook
    )
    thread.start()
    try:
        assert held_written.wait(timeout=WAIT_S)
        assert world.state().holds[sha].reason == "high_risk_no_approval"
        result = approval.by_operator(
            world.ctx, world.repo, sha, by="alice", why="INC-11", identity=None
        )
    finally:
        approved.set()
        thread.join(timeout=WAIT_S)

    assert isinstance(result, Evaluated) and result.reason == "allow_high_approved", result
    assert answers and answers[0]["reason"] == "high_risk_no_approval", answers
    assert len(world.gov.dispatches()) == 1
    assert world.gov.our_statuses(sha)[-1]["state"] == "success", world.gov.our_statuses(sha)
