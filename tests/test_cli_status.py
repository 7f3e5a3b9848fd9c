"""`governor status` and `governor explain` end to end: records written by the real flows
(verification, dispatch, deploy outcome) in-process against the fake GitHub, on the real
local store; the command called as `governor.cli.main([...])` and once as the installed
entry point in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from governor.cli import main
from governor.events import Delivery
from governor.flows import delivery as deliveries
from governor.flows.context import Context
from governor.flows.results import to_json
from governor.github.api import GitHubApp
from governor.ledger import Ledger
from governor.state import EmergencyFreeze, ReleaseState, emergency_freeze_set
from governor.store import open_store

from tests.support.e2e import deployed_base, new_repo
from tests.support.fake_github import FakeGitHub
from tests.support.governed import BASE_POLICY, DEPLOY_FILE, Governed
from tests.support.world import in_process

GOVERNOR = str(Path(sys.executable).with_name("governor"))
HOSTILE_PATH = "infra/\x1b[31mred\nevil.tf"
"""A HIGH path (infra/**) carrying an ANSI colour sequence and a newline."""
HOSTILE_REASON = "incident \x1b]0;pwned\x07 \x1b[2J\nsecond line"


@dataclass
class World:
    fake: FakeGitHub
    ctx: Context
    url: str
    now: list[datetime]

    def repo(self, policy: str = BASE_POLICY) -> Governed:
        gov = new_repo(self.fake, self.url, "http://unused.invalid")
        deployed_base(gov, policy)
        return gov

    def verify(self, gov: Governed, sha: str) -> dict[str, Any]:
        return self.deliver(gov.verified(sha))

    def deliver(self, payload: dict[str, Any], event: str = "workflow_run") -> dict[str, Any]:
        return to_json(deliveries.handle(self.ctx, Delivery(str(uuid.uuid4()), event, payload)))

    def run_of(self, gov: Governed, sha: str) -> dict[str, Any]:
        runs = gov.repo.dispatched_runs(DEPLOY_FILE)
        return next(r for r in runs if r["inputs"] == {"sha": sha})


@pytest.fixture
def world(fake: FakeGitHub, fake_app: GitHubApp, tmp_path: Path) -> Iterator[World]:
    url = (tmp_path / "store").as_uri()
    # The flows' clock is now (the command compares `until` with the real clock).
    now = [datetime.now(UTC).replace(microsecond=0)]
    yield World(fake, in_process(fake, url, now, app=fake_app), url, now)
    assert fake.violations == []


def cli(world: World, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["--store", world.url, *args])
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(world: World, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    code, out, err = cli(world, "--json", *args, capsys=capsys)
    assert out, err
    return code, json.loads(out)


# -- status ------------------------------------------------------------------------------


def test_status_shows_production_the_deploy_in_flight_and_each_hold_with_its_unblock(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    gov = world.repo()
    production = gov.state().production_sha
    low = gov.commit("low", ["src/app.py"])
    assert world.verify(gov, low)["decision"] == "ALLOW"
    run = world.run_of(gov, low)
    high = gov.commit("high", ["src/app.py", "infra/main.tf"])
    assert world.verify(gov, high)["reason"] == "high_risk_no_approval"

    code, status = cli_json(world, "status", gov.repo.full_name, capsys=capsys)

    assert code == 0
    assert status["repo"] == gov.repo.full_name and status["repo_id"] == gov.repo.repo_id
    assert status["production_sha"] == production
    assert status["production_at"].endswith("Z")
    assert [f["sha"] for f in status["in_flight"]] == [low]
    flight = status["in_flight"][0]
    assert flight["run_id"] == run["id"] and flight["run_url"] == run["html_url"]
    assert (flight["workflow"], flight["ref"]) == (DEPLOY_FILE, "main")
    assert [(h["sha"], h["reason"]) for h in status["held"]] == [(high, "high_risk_no_approval")]
    held = status["held"][0]
    assert held["until"] is None and held["due"] is False
    assert held["unblock"] == "approve it"
    assert held["docs"] == "docs/reasons.md#high_risk_no_approval"
    assert held["detail"] == "high-risk change needs an approval"

    code, text, _ = cli(world, "status", str(gov.repo.repo_id), capsys=capsys)
    assert code == 0
    assert f"production: {production}" in text
    assert f"run {run['id']} {run['html_url']} (deploy.yml on main)" in text
    assert f"  {high[:12]}  high_risk_no_approval since" in text
    assert "unblock: approve it" in text and "clears: not by itself" in text

    # The deploy succeeds: production moves, nothing is in flight any more.
    assert world.deliver(gov.repo.complete_run(run["id"], "success"))["result"] == "deployed"
    _, after = cli_json(world, "status", gov.repo.full_name.upper(), capsys=capsys)
    assert after["production_sha"] == low and after["production_previous_sha"] == production
    assert after["in_flight"] == []


def test_a_failed_deploy_shows_its_cooldown_until_and_when_it_resumes(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = BASE_POLICY + "cooldown_minutes: 30\n"
    gov = world.repo(policy)
    sha = gov.commit("flaky", ["src/app.py"], policy=policy)
    world.verify(gov, sha)
    failed = world.deliver(gov.repo.complete_run(world.run_of(gov, sha)["id"], "failure"))
    assert failed["result"] == "deploy_failed"
    world.now[0] += timedelta(minutes=1)
    assert world.verify(gov, sha)["reason"] == "cooldown"

    code, status = cli_json(world, "status", gov.repo.full_name, capsys=capsys)

    assert code == 0 and status["in_flight"] == []
    failure = gov.state().failures[sha]
    until = failure.last_at + timedelta(minutes=30)
    [held] = status["held"]
    assert (held["sha"], held["reason"]) == (sha, "cooldown")
    assert held["until"] == until.isoformat().replace("+00:00", "Z")
    assert held["due"] is False
    assert held["unblock"] == f"resumes within 5 min after {until:%Y-%m-%d %H:%M} UTC"
    [listed] = status["failures"]
    assert listed["sha"] == sha and listed["count"] == 1
    assert listed["issue_number"] == failure.issue_number is not None
    code, sha_status = cli_json(world, "status", gov.repo.full_name, "--sha", sha, capsys=capsys)
    assert code == 3 and sha_status["sha"]["state"] == "held"


def test_status_sha_exits_0_only_for_a_sha_in_production_or_in_flight(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    gov = world.repo()
    production = gov.state().production_sha
    assert production is not None
    low = gov.commit("going", ["src/app.py"])
    world.verify(gov, low)
    high = gov.commit("stuck", ["src/app.py", "infra/x.tf"])
    world.verify(gov, high)
    name = gov.repo.full_name

    def sha_state(sha: str) -> tuple[int, str]:
        code, status = cli_json(world, "status", name, "--sha", sha, capsys=capsys)
        return code, status["sha"]["state"]

    assert sha_state(production) == (0, "production")
    assert sha_state(low[:7]) == (0, "in_flight")  # a unique prefix is enough
    assert sha_state(high) == (3, "held")
    assert sha_state("f" * 40) == (3, "unknown")
    code, _, err = cli(world, "status", name, "--sha", "abcdef0", capsys=capsys)
    assert code == 1 and "no SHA starting with abcdef0" in err
    code, _, err = cli(world, "status", name, "--sha", "not-hex", capsys=capsys)
    assert code == 2 and "is not a commit SHA" in err


def test_every_repository_one_line_each_and_unknown_ones_said_clearly(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = world.repo(), world.repo()
    world.verify(second, second.commit("held", ["infra/y.tf"]))

    code, text, _ = cli(world, "status", capsys=capsys)
    assert code == 0
    lines = text.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{first.repo.full_name}  id {first.repo.repo_id}  production ")
    assert lines[0].endswith("in flight 0  held 0")
    assert lines[1].endswith("in flight 0  held 1")
    _, listing = cli_json(world, "status", capsys=capsys)
    assert [r["repo"] for r in listing["repositories"]] == [
        first.repo.full_name,
        second.repo.full_name,
    ]
    assert listing["repositories"][1]["held"] == 1 and listing["store"] == world.url

    code, _, err = cli(world, "status", "octo/nope", capsys=capsys)
    assert code == 1 and "unknown repository 'octo/nope'" in err
    code, _, err = cli(world, "status", "999999", capsys=capsys)
    assert code == 1 and "unknown repository '999999'" in err
    code, _, err = cli(world, "status", "not a repo", capsys=capsys)
    assert code == 2 and "give owner/name or its numeric id" in err
    empty = (Path(world.url.removeprefix("file://")).parent / "empty").as_uri()
    assert main(["--store", empty, "status"]) == 0
    assert capsys.readouterr().out.strip() == f"no repositories in {empty}"


def test_hostile_paths_and_reasons_reach_the_terminal_without_control_characters(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    gov = world.repo()
    sha = gov.commit("hostile", ["src/app.py", HOSTILE_PATH])
    assert world.verify(gov, sha)["reason"] == "high_risk_no_approval"
    freeze = EmergencyFreeze(reason=HOSTILE_REASON, by="mallory\x1b[8m", at=world.now[0])
    Ledger(open_store(world.url)).transition(
        gov.repo.repo_id,
        gov.repo.full_name,
        lambda s: emergency_freeze_set(s, freeze, world.now[0]),
    )
    frozen = gov.commit("frozen", ["src/other.py"])
    assert world.verify(gov, frozen)["reason"] == "freeze_window"

    _, status_text, _ = cli(world, "status", gov.repo.full_name, capsys=capsys)
    _, explain_text, _ = cli(world, "explain", gov.repo.full_name, sha, capsys=capsys)

    for text in (status_text, explain_text):
        assert "\x1b" not in text and "\x07" not in text
    assert "  HIGH    infra/?[31mred?evil.tf  matched *.tf" in explain_text.splitlines()
    assert "emergency freeze (in force) by mallory?[8m since " in status_text
    assert "incident ?]0;pwned? ?[2J?second line" in status_text
    # JSON keeps the strings exactly (json escapes control characters itself).
    _, explained = cli_json(world, "explain", gov.repo.full_name, sha, capsys=capsys)
    assert HOSTILE_PATH in [p["path"] for p in explained["paths"]]
    _, status = cli_json(world, "status", gov.repo.full_name, capsys=capsys)
    assert status["emergency_freeze"]["reason"] == HOSTILE_REASON
    assert status["emergency_freeze"]["active"] is True
    [held_frozen] = [h for h in status["held"] if h["sha"] == frozen]
    assert held_frozen["unblock"] == "held until the freeze is lifted by hand"


def test_status_text_says_who_lifted_each_freeze_and_the_degradation_when_and_why(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    gov = world.repo()
    repo = gov.repo.full_name
    for step in (
        ("freeze", repo, "on", "--until", "2h", "--reason", "INC-15: errors", "--by", "lee"),
        ("freeze", "--all", "on", "--reason", "region outage", "--by", "kim"),
        ("degraded", repo, "on", "--reason", "error rate 5%", "--by", "lee"),
    ):
        code, _, err = cli(world, *step, capsys=capsys)
        assert code == 0, err
    code, text, err = cli(world, "status", repo, capsys=capsys)
    assert code == 0, err
    assert "\nlast " not in text, "nothing lifted yet"

    for step in (
        ("freeze", repo, "off", "--reason", "INC-15 resolved", "--by", "max"),
        ("freeze", "--all", "off", "--reason", "region back", "--by", "pat"),
        ("degraded", repo, "off", "--reason", "error rate back to 0.1%", "--by", "nia"),
    ):
        code, _, err = cli(world, *step, capsys=capsys)
        assert code == 0, err

    code, text, err = cli(world, "status", repo, capsys=capsys)
    assert code == 0, err
    _, status = cli_json(world, "status", repo, capsys=capsys)
    assert (status["emergency_freeze"], status["global_freeze"], status["degraded"]) == (
        None,
        None,
        None,
    )

    def at(moment: str) -> str:
        return datetime.fromisoformat(moment).strftime("%Y-%m-%d %H:%M UTC")

    def lifted(field: str) -> tuple[str, str]:
        record = status[field]
        assert record["lifted_identity"], "the local store names its credentials"
        lift = f"(store credentials {record['lifted_identity']}) at {at(record['lifted_at'])}"
        return lift, at(record["since"])

    mine, everyone, degraded = (
        lifted(f) for f in ("freeze_lifted", "global_freeze_lifted", "degraded_lifted")
    )
    until = at(status["freeze_lifted"]["until"])
    lines = text.splitlines()
    assert (
        f"last emergency freeze lifted by max {mine[0]}: INC-15 resolved; it was set by lee "
        f"at {mine[1]} until {until}: INC-15: errors"
    ) in lines
    assert (
        f"last emergency freeze of every repository lifted by pat {everyone[0]}: region back; "
        f"it was set by kim at {everyone[1]}: region outage"
    ) in lines
    assert (
        f"last degraded declaration taken back by nia {degraded[0]}: error rate back to 0.1%; "
        f"it was declared by lee at {degraded[1]}: error rate 5%"
    ) in lines
    assert "emergency freeze (in force)" not in text and "declared degraded by" not in text

    code, listing, err = cli(world, "status", capsys=capsys)
    assert code == 0, err
    assert listing.splitlines()[0].startswith(
        "last emergency freeze of every repository lifted by pat "
    )

    # The CLI refuses control characters in --by and --reason; a record that holds them
    # anyway (written by other means) still reaches the terminal without them.
    def hostile(state: ReleaseState) -> ReleaseState:
        assert state.degraded_lifted is not None
        update = {"lifted_by": "mallory\x1b[8m", "lifted_reason": HOSTILE_REASON}
        return state.model_copy(
            update={"degraded_lifted": state.degraded_lifted.model_copy(update=update)}
        )

    Ledger(open_store(world.url)).transition(gov.repo.repo_id, repo, hostile)
    _, text, _ = cli(world, "status", repo, capsys=capsys)
    assert "\x1b" not in text and "\x07" not in text
    assert (
        f"last degraded declaration taken back by mallory?[8m {degraded[0]}: "
        "incident ?]0;pwned? ?[2J?second line; it was declared by lee"
    ) in text


# -- explain -----------------------------------------------------------------------------


def test_explain_shows_evaluations_inputs_paths_rule_and_unblock(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    gov = world.repo()
    production = gov.state().production_sha
    sha = gov.commit("explain", ["src/app.py", "infra/main.tf", "package.json"])
    world.verify(gov, sha)
    record = Ledger(open_store(world.url)).read_decision(gov.repo.repo_id, sha)
    assert record is not None and len(record.evaluations) == 1

    code, explained = cli_json(world, "explain", gov.repo.full_name, sha[:10], capsys=capsys)

    assert code == 0
    latest = record.evaluations[-1]
    assert explained["sha"] == sha and explained["outcome"] == "HOLD"
    assert explained["reason"] == "high_risk_no_approval" and explained["risk"] == "HIGH"
    assert explained["docs"] == "docs/reasons.md#high_risk_no_approval"
    assert explained["unblock"] == "approve it"
    assert explained["decided_by"] == "trusted"
    assert explained["trusted_policy"] == f"production {production}"
    assert explained["production_sha"] == production
    # The patterns of the trusted policy the record keeps (the defaults): the last
    # matching one decides.
    assert explained["paths"] == [
        {"path": "infra/main.tf", "risk": "HIGH", "pattern": "*.tf"},
        {"path": "package.json", "risk": "MEDIUM", "pattern": "package.json"},
    ]
    assert explained["patterns_policy"] == "trusted"
    assert explained["current"]["state"] == "held"
    assert explained["total_evaluations"] == 1
    [evaluation] = explained["evaluations"]
    assert evaluation["inputs"] == latest.inputs
    assert evaluation["trigger"] == latest.trigger and evaluation["delivery"] == latest.delivery

    # A --policy file takes precedence over the stored text.
    policy = tmp_path / "policy.yml"
    policy.write_text(
        BASE_POLICY + "high_risk_paths: ['*.tf', 'infra/**']\nmedium_risk_paths: []\n"
    )
    _, matched = cli_json(
        world, "explain", gov.repo.full_name, sha, "--policy", str(policy), capsys=capsys
    )
    assert [p["pattern"] for p in matched["paths"]] == ["infra/**", None]
    policy.write_text(BASE_POLICY)  # the defaults: the last matching pattern decides
    code, text, _ = cli(
        world, "explain", gov.repo.full_name, sha, "--policy", str(policy), capsys=capsys
    )
    assert code == 0
    assert "  HIGH    infra/main.tf  matched *.tf" in text
    assert "  MEDIUM  package.json  matched package.json" in text
    assert "decision: HOLD high_risk_no_approval (risk HIGH)" in text
    assert "rule: high_risk_no_approval, see docs/reasons.md#high_risk_no_approval" in text
    assert f'  production_sha: "{production}"' in text
    policy.write_text("approval:\n  modee: label\n")
    code, _, err = cli(
        world, "explain", gov.repo.full_name, sha, "--policy", str(policy), capsys=capsys
    )
    assert code == 4 and "approval.modee" in err


def test_explain_lists_every_evaluation_newest_last(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = BASE_POLICY + "cooldown_minutes: 30\n"
    gov = world.repo(policy)
    sha = gov.commit("twice", ["src/app.py"], policy=policy)
    world.verify(gov, sha)
    world.deliver(gov.repo.complete_run(world.run_of(gov, sha)["id"], "failure"))
    world.now[0] += timedelta(minutes=5)
    world.verify(gov, sha)

    code, explained = cli_json(world, "explain", gov.repo.full_name, sha, capsys=capsys)

    assert code == 0
    assert [(e["outcome"], e["reason"]) for e in explained["evaluations"]] == [
        ("ALLOW", "allow_low"),
        ("HOLD", "cooldown"),
    ]
    assert explained["reason"] == "cooldown" and explained["until"] is not None
    assert explained["unblock"].startswith("resumes within 5 min after ")
    assert explained["current"]["state"] == "held"


def test_explain_without_a_record_exits_1(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    gov = world.repo()
    production = gov.state().production_sha
    assert production is not None
    code, _, err = cli(world, "explain", gov.repo.full_name, production, capsys=capsys)
    assert code == 1 and f"no decision recorded for {production}" in err
    code, _, err = cli(world, "explain", "octo/none", production, capsys=capsys)
    assert code == 1 and "unknown repository" in err


# -- as a user runs them -----------------------------------------------------------------


def test_status_and_explain_as_the_installed_command(world: World) -> None:
    gov = world.repo()
    sha = gov.commit("subprocess", ["src/app.py", HOSTILE_PATH])
    world.verify(gov, sha)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNOR_")}
    env["GOVERNOR_STORE_URL"] = world.url

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [GOVERNOR, *args], capture_output=True, text=True, env=env, check=False
        )

    held = run("status", gov.repo.full_name, "--sha", sha[:8])
    assert held.returncode == 3, held.stderr
    assert f"{sha}: held (high_risk_no_approval); not going out" in held.stdout
    assert "\x1b" not in held.stdout
    listing = run("status", "--json")
    assert listing.returncode == 0
    assert json.loads(listing.stdout)["repositories"][0]["repo_id"] == gov.repo.repo_id
    explained = run("explain", str(gov.repo.repo_id), sha, "--json")
    assert explained.returncode == 0, explained.stderr
    assert json.loads(explained.stdout)["paths"][0]["path"] == HOSTILE_PATH
    text = run("explain", gov.repo.full_name, sha)
    assert "infra/?[31mred?evil.tf" in text.stdout and "\x1b" not in text.stdout
    for command in ("status", "explain"):
        helped = run(command, "--help")
        assert helped.returncode == 0 and "Exit status" in helped.stdout
