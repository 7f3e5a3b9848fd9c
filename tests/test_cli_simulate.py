"""`governor simulate REPO SHA [--live]` end to end.

Records are written by the real flows: verification webhooks go to the `github_webhook`
function served over HTTP on loopback (conftest's `local_webhook`) on the real local
store, GitHub is the fake (every request checked against GitHub's OpenAPI description).
The command runs in-process (`governor.cli.main`). Tampered records are copies in a store
of their own, so the originals stay as written (and every test's records are replayed
afterwards anyway: tests/support/replay_check.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from governor.commands.simulate import simulate_evaluation
from governor.decision import RULES_VERSION
from governor.events import Delivery
from governor.flows import delivery as deliveries
from governor.flows.context import Context
from governor.flows.results import to_json
from governor.ledger import DecisionRecord, Evaluation, Ledger, decision_key, state_key
from governor.policy import POLICY_PATH
from governor.replay import Replay
from governor.state import EmergencyFreeze, ReleaseState, emergency_freeze_set, record_intent
from governor.store import ABSENT, Generation, ObjectStore, Precondition, StoredObject, open_store

from tests.support.cli_world import Cli
from tests.support.e2e import deployed_base, new_repo
from tests.support.fake_github import Call, FakeGitHub
from tests.support.governed import BASE_POLICY, DEPLOY_FILE, Governed
from tests.support.world import in_process

STORED_V1 = Path(__file__).parent / "fixtures" / "stored" / "v1"
WRITES_TO_GITHUB_ALLOWED = {"apps/create-installation-access-token"}
"""The only request `--live` may make that is not a read: the App's installation token."""


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """conftest's `cli` without its `app_env`: only the live tests ask for that."""
    return Cli(capsys)


@pytest.fixture
def gov(fake: FakeGitHub, local_store_url: str, local_webhook: str) -> Iterator[Governed]:
    governed = new_repo(fake, local_store_url, local_webhook)
    yield governed
    assert fake.violations == [], "the governor made a request GitHub's description does not have"


def verify(gov: Governed, sha: str) -> dict[str, Any]:
    response = gov.send(gov.verified(sha))
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


def record_of(gov: Governed, sha: str) -> DecisionRecord:
    record = Ledger(open_store(gov.store_url)).read_decision(gov.repo.repo_id, sha)
    assert record is not None
    return record


def tampered_copy(
    gov: Governed, sha: str, tmp_path: Path, edit: Callable[[dict[str, Any]], None]
) -> str:
    """A new store holding the repository's state and `sha`'s record, edited by `edit`."""
    source = open_store(gov.store_url)
    url = (tmp_path / f"copy-{uuid.uuid4().hex[:8]}").as_uri()
    copy = open_store(url)
    for key in (state_key(gov.repo.repo_id), decision_key(gov.repo.repo_id, sha)):
        current = source.get(key)
        assert current is not None, key
        data = current.data
        if key.startswith("decisions/"):
            raw = json.loads(data)
            edit(raw)
            data = json.dumps(raw).encode()
        copy.put(key, data, if_generation_match=ABSENT)
    return url


def store_snapshot(url: str) -> dict[str, str]:
    store = open_store(url)
    found = {}
    for key in store.list():
        current = store.get(key)
        assert current is not None
        found[key] = current.generation
    return found


# -- from the record -------------------------------------------------------------------


def test_allow_and_hold_evaluations_reproduce_exactly(gov: Governed, cli: Cli) -> None:
    base = deployed_base(gov)
    low = gov.commit("low", ["src/app.py"])
    high = gov.commit("high", ["src/app.py", "infra/main.tf"])
    assert verify(gov, low)["reason"] == "allow_low"
    assert verify(gov, high)["reason"] == "high_risk_no_approval"

    code, result, err = cli("--store", gov.store_url, "simulate", gov.repo.full_name, low[:8])

    assert code == 0, err
    assert (result["repo"], result["repo_id"], result["sha"]) == (
        gov.repo.full_name,
        gov.repo.repo_id,
        low,
    )
    assert result["rules_version"] == RULES_VERSION
    assert (result["reproduced"], result["mismatches"], result["not_reproducible"]) == (1, 0, 0)
    [allowed] = result["evaluations"]
    assert allowed["result"] == "reproduced" and allowed["rules_version"] == RULES_VERSION
    assert allowed["recorded"]["outcome"] == "ALLOW" and allowed["override"] is None
    assert allowed["replayed"] == allowed["recorded"] == allowed["rules"]
    assert allowed["differences"] == []

    code, result, err = cli("--store", gov.store_url, "simulate", str(gov.repo.repo_id), high)
    assert code == 0, err
    [held] = result["evaluations"]
    assert held["result"] == "reproduced"
    assert held["replayed"]["reason"] == "high_risk_no_approval"

    code, text, _ = cli.text("--store", gov.store_url, "simulate", gov.repo.full_name, high)
    assert code == 0
    assert f"{gov.repo.full_name} {high}" in text
    assert "verified: HOLD high_risk_no_approval (HIGH): high-risk change needs an approval" in text
    assert "      reproduced" in text
    assert "reproduced 1, mismatches 0, not reproducible 0" in text

    # What the record keeps: both policies once (the same text), the state it was decided
    # on (production), the files of the change only, and the rules version.
    record = record_of(gov, high)
    replay = record.evaluations[-1].replay
    assert replay is not None and replay.rules_version == RULES_VERSION
    assert replay.trusted_policy == replay.own_policy
    assert (replay.policies, replay.changes) == ({}, {}), "kept in the record, once"
    assert record.policies == {replay.trusted_policy: BASE_POLICY}
    assert replay.state.production_sha == base and replay.production_sha == base
    files = replay.comparisons[base].files
    assert files is not None and list(record.changes) == [files]
    assert sorted(f.filename for f in record.changes[files]) == ["infra/main.tf", "src/app.py"]
    assert replay.trusted_source == f"production {base}"


def test_a_tampered_state_or_policy_is_a_mismatch_and_exits_1(
    gov: Governed, cli: Cli, tmp_path: Path
) -> None:
    deployed_base(gov)
    low = gov.commit("low", ["src/app.py"])
    assert verify(gov, low)["reason"] == "allow_low"
    repo = gov.repo.full_name

    def production_moved(raw: dict[str, Any]) -> None:
        raw["evaluations"][0]["replay"]["state"]["production_sha"] = "f" * 40

    url = tampered_copy(gov, low, tmp_path, production_moved)
    code, result, _ = cli("--store", url, "simulate", repo, low)
    assert code == 1
    [moved] = result["evaluations"]
    assert moved["result"] == "mismatch" and moved["replayed"] is None
    assert moved["why"].startswith("the stored inputs do not fit together: production is ffff")

    def src_is_high(raw: dict[str, Any]) -> None:
        [digest] = raw["policies"]
        raw["policies"][digest] += "high_risk_paths: ['src/**']\n"

    url = tampered_copy(gov, low, tmp_path, src_is_high)
    code, result, _ = cli("--store", url, "simulate", repo, low)
    assert code == 1
    [changed] = result["evaluations"]
    assert changed["result"] == "mismatch"
    assert changed["replayed"]["reason"] == "high_risk_no_approval"
    found = {d["field"]: (d["stored"], d["replayed"]) for d in changed["differences"]}
    assert found["outcome"] == ("ALLOW", "HOLD")
    assert found["reason"] == ("allow_low", "high_risk_no_approval")
    assert found["inputs.high_paths"] == ([], ["src/app.py"])
    assert (result["mismatches"], result["rules_changed"]) == (1, False)

    code, text, _ = cli.text("--store", url, "simulate", repo, low)
    assert code == 1
    assert f"MISMATCH under the same rules (version {RULES_VERSION})" in text
    assert '      reason: stored "allow_low", replayed "high_risk_no_approval"' in text
    assert "reproduced 0, mismatches 1, not reproducible 0" in text


def test_a_mismatch_under_an_older_rules_version_exits_5(
    gov: Governed, cli: Cli, tmp_path: Path
) -> None:
    deployed_base(gov)
    low = gov.commit("low", ["src/app.py"])
    assert verify(gov, low)["reason"] == "allow_low"
    repo = gov.repo.full_name

    def older(raw: dict[str, Any]) -> None:
        raw["evaluations"][0]["replay"]["rules_version"] = RULES_VERSION - 1

    def older_and_different(raw: dict[str, Any]) -> None:
        older(raw)
        [digest] = raw["policies"]
        raw["policies"][digest] += "high_risk_paths: ['src/**']\n"

    same = tampered_copy(gov, low, tmp_path, older)
    code, result, _ = cli("--store", same, "simulate", repo, low)
    assert code == 0, "older rules that decide the same reproduce"
    assert result["evaluations"][0]["rules_version"] == RULES_VERSION - 1

    changed = tampered_copy(gov, low, tmp_path, older_and_different)
    code, result, _ = cli("--store", changed, "simulate", repo, low)
    assert code == 5
    assert (result["mismatches"], result["rules_changed"]) == (1, True)
    code, text, _ = cli.text("--store", changed, "simulate", repo, low)
    assert code == 5
    assert (
        f"MISMATCH: decided under rules version {RULES_VERSION - 1}, these are version "
        f"{RULES_VERSION}" in text
    )


def test_a_record_written_before_replay_data_is_not_reproducible(cli: Cli, tmp_path: Path) -> None:
    url = (tmp_path / "store").as_uri()
    store = open_store(url)
    for path in STORED_V1.rglob("*.json"):
        store.put(
            path.relative_to(STORED_V1).as_posix(), path.read_bytes(), if_generation_match=ABSENT
        )

    code, result, err = cli("--store", url, "simulate", "octo/shop", "c" * 40)

    assert code == 0, err
    [legacy] = result["evaluations"]
    assert legacy["result"] == "not_reproducible" and legacy["rules_version"] is None
    assert legacy["why"] == "recorded before evaluations kept their inputs (no replay data)"
    assert (result["reproduced"], result["not_reproducible"]) == (0, 1)
    code, text, _ = cli.text("--store", url, "simulate", "4242", "c" * 40)
    assert "not reproducible: recorded before evaluations kept their inputs" in text


def test_no_record_or_an_unknown_repository_exits_1(gov: Governed, cli: Cli) -> None:
    deployed_base(gov)
    never = gov.commit("never", ["src/app.py"])
    code, _, err = cli("--store", gov.store_url, "simulate", gov.repo.full_name, never)
    assert code == 1 and "no decision recorded" in err
    code, _, err = cli("--store", gov.store_url, "simulate", "octo/nothing-here", never)
    assert code == 1 and "unknown repository" in err


def test_a_dispatch_github_refuses_records_the_rules_verdict_and_the_override(
    gov: Governed, fake: FakeGitHub, cli: Cli
) -> None:
    deployed_base(gov)
    sha = gov.commit("refused", ["src/app.py"])
    fake.fail_next("actions/create-workflow-dispatch", 422, body={"message": "No ref found"})

    answer = verify(gov, sha)

    assert (answer["decision"], answer["reason"]) == ("HOLD", "deploy_not_configured")
    replay = record_of(gov, sha).latest.replay  # type: ignore[union-attr]
    assert replay is not None and replay.override is not None
    assert replay.override.at_dispatch == "refused"
    assert (replay.override.judged.outcome, replay.override.judged.reason) == (
        "ALLOW",
        "allow_low",
    )
    code, result, err = cli("--store", gov.store_url, "simulate", gov.repo.full_name, sha)
    assert code == 0, err
    [refused] = result["evaluations"]
    assert refused["result"] == "reproduced" and refused["override"] == "refused"
    assert refused["recorded"]["reason"] == "deploy_not_configured"
    assert refused["rules"]["reason"] == refused["replayed"]["reason"] == "allow_low"
    code, text, _ = cli.text("--store", gov.store_url, "simulate", gov.repo.full_name, sha)
    assert "the rules said ALLOW allow_low; at dispatch: GitHub refused the dispatch" in text


def test_the_state_kept_is_the_one_judged_in_the_write_not_the_one_read_before(
    gov: Governed, fake: FakeGitHub, cli: Cli
) -> None:
    """An operator's freeze lands while the verification reads GitHub: the write decides
    on the state with the freeze (HOLD), and that is the state kept. The state read before
    (no freeze) would replay as ALLOW: a replay on it is caught as a mismatch."""
    deployed_base(gov)
    sha = gov.commit("caught", ["src/app.py"])
    ledger = Ledger(open_store(gov.store_url))
    read_before = []

    def freeze_now(_call: Call) -> None:
        read_before.append(gov.state())
        freeze = EmergencyFreeze(reason="INC-7", by="hal", at=datetime.now(UTC))
        ledger.transition(
            gov.repo.repo_id,
            gov.repo.full_name,
            lambda s: emergency_freeze_set(s, freeze, datetime.now(UTC)),
        )

    fake.on_request("repos/compare-commits-with-basehead", freeze_now)

    answer = verify(gov, sha)

    assert (answer["decision"], answer["reason"]) == ("HOLD", "freeze_window"), answer
    record = record_of(gov, sha)
    evaluation = record.latest
    assert evaluation is not None and evaluation.replay is not None
    assert evaluation.replay.override is None, "the rules held it: no override"
    assert evaluation.replay.state.emergency_freeze is not None
    code, result, _ = cli("--store", gov.store_url, "simulate", gov.repo.full_name, sha)
    assert code == 0 and result["evaluations"][0]["result"] == "reproduced"

    [before] = read_before
    assert before.emergency_freeze is None
    wrong = replace_state(record, evaluation, before)
    simulated = simulate_evaluation(evaluation, wrong)
    assert simulated.result == "mismatch"
    assert simulated.replayed is not None and simulated.replayed.outcome == "ALLOW"


def replace_state(record: DecisionRecord, evaluation: Evaluation, state: ReleaseState) -> Replay:
    replay = record.replay_of(evaluation)
    assert replay is not None
    return replay.model_copy(update={"state": state})


class WriteLandsFirst:
    """A store on which, once armed, another write lands on `key` right before the next
    write to it: that write then conflicts, and its update runs again on the newer state."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url, self.write_timeout_s = inner.url, inner.write_timeout_s
        self.before: dict[str, Callable[[], None]] = {}

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
        hook = self.before.pop(key, None)
        if hook is not None:
            hook()
        return self.inner.put(
            key, data, if_generation_match=if_generation_match, timeout_s=timeout_s
        )

    def delete(self, key: str, *, if_generation_match: Generation | None = None) -> None:
        self.inner.delete(key, if_generation_match=if_generation_match)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)


@dataclass
class InProcess:
    """The flows in-process (as tests/test_flows.py runs them) on a `WriteLandsFirst`
    store; `other` writes to the same store as another process would."""

    gov: Governed
    ctx: Context
    store: WriteLandsFirst
    other: Ledger

    def verify(self, sha: str) -> dict[str, Any]:
        delivery = Delivery(str(uuid.uuid4()), "workflow_run", self.gov.verified(sha))
        answer: dict[str, Any] = to_json(deliveries.handle(self.ctx, delivery))
        return answer


@pytest.fixture
def inproc(fake: FakeGitHub, tmp_path: Path) -> Iterator[InProcess]:
    url = (tmp_path / "store").as_uri()
    store = WriteLandsFirst(open_store(url))
    ctx = in_process(fake, url, store=store)
    gov = new_repo(fake, url, "http://unused.invalid")
    yield InProcess(gov, ctx, store, Ledger(store.inner))
    assert fake.violations == []


def test_the_state_kept_is_the_one_of_the_attempt_that_wrote(inproc: InProcess) -> None:
    """In-process: a freeze lands between the verification's last read of the state and
    its conditional write, which conflicts and decides again on the state with the
    freeze. The replay keeps that state; the state read right before the write (no
    freeze) would replay as ALLOW."""
    gov, other = inproc.gov, inproc.other
    deployed_base(gov)
    sha = gov.commit("raced", ["src/app.py"])
    read_last = []

    def freeze_first() -> None:
        read_last.append(gov.state())
        freeze = EmergencyFreeze(reason="INC-8", by="hal", at=datetime.now(UTC))
        other.transition(
            gov.repo.repo_id,
            gov.repo.full_name,
            lambda s: emergency_freeze_set(s, freeze, datetime.now(UTC)),
        )

    inproc.store.before[state_key(gov.repo.repo_id)] = freeze_first

    result = inproc.verify(sha)

    assert (result["decision"], result["reason"]) == ("HOLD", "freeze_window"), result
    assert gov.dispatches() == []
    record = record_of(gov, sha)
    evaluation = record.latest
    assert evaluation is not None and evaluation.replay is not None
    assert evaluation.replay.state.emergency_freeze is not None
    [before] = read_last
    assert before.emergency_freeze is None
    simulated = simulate_evaluation(evaluation, replace_state(record, evaluation, before))
    assert simulated.result == "mismatch"
    assert simulated.replayed is not None and simulated.replayed.reason == "allow_low"


def test_a_stale_intent_is_judged_and_kept_as_if_never_written(inproc: InProcess) -> None:
    """A run-less intent of the SHA, left by an instance that died before dispatching, is
    dropped in the write that decides again: the state kept is the one without it. With
    it (one deploy in the last hour, the limit is 1) the replay would hold rate_limit."""
    gov = inproc.gov
    policy = BASE_POLICY + "max_deploys_per_hour: 1\n"
    deployed_base(gov, policy)
    sha = gov.commit("retried", ["src/app.py"], policy=policy)
    died = datetime.now(UTC) - timedelta(minutes=5)  # older than the lease
    inproc.other.transition(
        gov.repo.repo_id,
        gov.repo.full_name,
        lambda s: record_intent(s, sha, "died-here", died, workflow=DEPLOY_FILE, ref="main"),
    )
    with_intent = gov.state()

    result = inproc.verify(sha)

    assert (result["decision"], result["reason"]) == ("ALLOW", "allow_low"), result
    assert [d["inputs"] for d in gov.dispatches()] == [{"sha": sha}]
    record = record_of(gov, sha)
    evaluation = record.latest
    assert evaluation is not None and evaluation.replay is not None
    assert "died-here" not in {d.intent_id for d in evaluation.replay.state.dispatches}
    simulated = simulate_evaluation(evaluation, replace_state(record, evaluation, with_intent))
    assert simulated.result == "mismatch"
    assert simulated.replayed is not None and simulated.replayed.reason == "rate_limit"


# -- live --------------------------------------------------------------------------------


def test_live_shows_what_would_happen_now_and_does_nothing(
    gov: Governed, fake: FakeGitHub, cli: Cli, app_env: dict[str, str]
) -> None:
    base = deployed_base(gov)
    low = gov.commit("low", ["src/app.py"])  # never verified: no record
    high = gov.commit("high", ["infra/main.tf"])
    assert verify(gov, high)["reason"] == "high_risk_no_approval"
    before = store_snapshot(gov.store_url)
    calls = len(fake.calls)

    code, result, err = cli("simulate", gov.repo.full_name, low, "--live")

    assert code == 0, err
    assert result["state"] == "decided" and result["sha"] == low
    assert result["decision"]["outcome"] == "ALLOW"
    assert result["decision"]["reason"] == "allow_low"
    assert (
        result["would"]
        == f"dispatch deploy.yml on main with sha={low} (unless an operator freezes first)"
    )
    assert result["production_sha"] == base and result["trusted_policy"] == f"production {base}"
    assert result["mode"] == "enforce" and result["stored"] is None
    assert result["inputs"]["production_sha"] == base

    code, result, err = cli("simulate", gov.repo.full_name, high[:10], "--live")
    assert code == 0, err
    assert result["decision"]["reason"] == "high_risk_no_approval"
    assert result["would"].startswith("post the status failure: HOLD high_risk_no_approval")
    assert result["stored"]["reason"] == "high_risk_no_approval"

    code, text, _ = cli.text("simulate", gov.repo.full_name, low, "--live")
    assert code == 0
    assert f"{gov.repo.full_name} {low} now (from GitHub, nothing done)" in text
    assert "would decide: ALLOW allow_low (LOW): low-risk change" in text

    assert store_snapshot(gov.store_url) == before, "--live wrote to the store"
    made = fake.calls[calls:]
    assert made, "--live asked GitHub"
    assert [
        (c.method, c.operation_id)
        for c in made
        if c.method != "GET" and c.operation_id not in WRITES_TO_GITHUB_ALLOWED
    ] == []
    assert gov.dispatches() == [] and gov.our_statuses(low) == []


def test_live_says_so_when_there_is_nothing_to_decide(
    gov: Governed, cli: Cli, app_env: dict[str, str]
) -> None:
    base = deployed_base(gov)
    side = "ab" * 20
    gov.repo.add_commit(
        side, files=[{"filename": "x.py", "status": "added"}], parent=base, branch="topic"
    )
    gov.repo.set_file(POLICY_PATH, BASE_POLICY, ref=side)

    code, result, err = cli("simulate", gov.repo.full_name, base, "--live")
    assert code == 0, err
    assert (result["state"], result["decision"]) == ("in_production", None)

    code, result, err = cli("simulate", gov.repo.full_name, side, "--live")
    assert code == 0, err
    assert result["state"] == "ignored"
    assert result["why"].startswith(f"{side} is not on refs/heads/main")

    gov.repo.set_file(POLICY_PATH, "enabled: false\n", ref="main")
    gov.repo.set_file(POLICY_PATH, "enabled: false\n", ref=base)
    code, text, _ = cli.text("simulate", gov.repo.full_name, side, "--live")
    assert code == 0
    assert f"ignored: {gov.repo.full_name} is not governed (refs/heads/main)" in text
