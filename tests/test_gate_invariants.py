"""Invariants of the gate: both policies must allow, and concurrent evaluations keep the rules.

1. Properties of `governor.gate.judge` on random (trusted, SHA's own) policy pairs, release
   states and facts: an ALLOW under both is an ALLOW under each alone, and the converse.
2. Random interleavings of concurrent evaluations (gather, then the conditional write that
   re-decides and records the intent) against the real local store, in one process, step
   by step: the rate limit holds in every trailing hour and no dispatch is a rollback.
3. The same invariants with the real `flows.verification.evaluate` in 16 processes at once, on the
   local store, fake-gcs-server and moto (behind a proxy that makes moto's conditional
   PUTs atomic, as S3's are: tests/support/s3_serial_proxy.py). Only GitHub is faked.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from governor.decision import Reason
from governor.gate import Facts, StaleFacts, Verdict, bases_needed, judge
from governor.ledger import Ledger
from governor.policy import POLICY_PATH, ApprovalMode, Policy
from governor.risk import ChangedFile, Comparison
from governor.state import (
    RATE_WINDOW,
    Approval,
    Dispatch,
    EmergencyFreeze,
    Failure,
    ReleaseState,
    deploy_succeeded,
    record_intent,
)
from governor.store import open_store, update
from hypothesis import find, given, settings
from hypothesis import strategies as st

from tests.support import emulators, evaluate_worker, workers
from tests.support.linear_repo import (
    LOW_RISK_POLICY,
    FakeGitHubPort,
    FakeRepoApi,
    LinearHistory,
    facts_for,
    low_risk_policy,
)
from tests.support.s3_serial_proxy import serial_proxy

NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)  # a Tuesday afternoon

# =========================================================================================
# 1. ALLOW under both policies <=> ALLOW under each alone
# =========================================================================================

SHA = "a" * 40
PRODUCTION = "c" * 40
DISPATCHABLE = (PRODUCTION, *(f"{i:040x}" for i in range(1, 5)))
PATTERNS = (
    "infra/**",
    "*.tf",
    "**/migrations/**",
    "src/auth/**",
    "package.json",
    "docs/**",
    "*.lock",
    "Dockerfile",
)
FILES = (
    "src/app.py",
    "src/auth/session.py",
    "infra/main.tf",
    "db/migrations/0001_init.sql",
    "package.json",
    "docs/guide.md",
    "poetry.lock",
    "Dockerfile",
    "README.md",
    POLICY_PATH,
)
LABELS = ("production-degraded", "incident")
CLOCKS = ("00:00", "06:30", "09:00", "12:00", "14:00", "16:00", "18:30", "22:00", "24:00")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TRUSTED_ONLY = ("approval", "verification_workflow", "deploy_workflow", "deploy_ref", "mode")
"""The keys only the trusted policy decides (docs/policy.md): the SHA's own values are unused."""


def _subset(pool: Sequence[str], max_size: int | None = None) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(pool), unique=True, max_size=max_size or len(pool))


def _rarely() -> st.SearchStrategy[bool]:
    """True one time in four: rules that hold everything must not drown the others."""
    return st.sampled_from([False, False, False, True])


@st.composite
def _weekly_window(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(st.sampled_from(CLOCKS[:-1]))
    end = draw(st.sampled_from([c for c in CLOCKS if c != start]))
    days = draw(st.lists(st.sampled_from(DAYS), min_size=1, unique=True))
    return {"days": days, "start": start, "end": end, "reason": "weekly"}


@st.composite
def _freeze_range(draw: st.DrawFn) -> dict[str, Any]:
    start = NOW + timedelta(hours=draw(st.integers(-48, 8 * 24)))
    end = start + timedelta(hours=draw(st.integers(1, 72)))
    return {"start": start, "end": end, "reason": "launch event"}


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """A valid policy over the keys that matter to the gate; deploy_workflow always set."""
    raw = {
        "deploy_workflow": draw(st.sampled_from(["deploy.yml", "ship.yaml"])),
        "deploy_ref": draw(st.sampled_from([None, "main", "release"])),
        "mode": draw(st.sampled_from([None, "enforce", "shadow"])),
        "high_risk_paths": draw(_subset(PATTERNS)),
        "medium_risk_paths": draw(_subset(PATTERNS)),
        "cooldown_minutes": draw(st.sampled_from([0, 10, 30, 120, 24 * 60])),
        "max_deploys_per_hour": draw(st.integers(1, 5)),
        "require_approval_for_first_deploy": draw(st.booleans()),
        "degraded": {
            "manual": draw(_rarely()),
            "issue_label": draw(st.sampled_from([*LABELS, None])),
        },
        "approval": {"mode": draw(st.sampled_from(list(ApprovalMode)))},
        "freeze": {
            "timezone": draw(st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"])),
            "weekly": [draw(_weekly_window())] if draw(_rarely()) else [],
            "ranges": [draw(_freeze_range())] if draw(_rarely()) else [],
        },
    }
    return Policy.model_validate(raw)


@st.composite
def _comparison(draw: st.DrawFn, statuses: Sequence[str]) -> Comparison:
    status = draw(st.sampled_from(statuses))
    if status == "behind":
        return Comparison("behind", 0, draw(st.integers(1, 9)), (), complete=True)
    files = tuple(ChangedFile(name) for name in draw(_subset(FILES, max_size=4)))
    complete = draw(st.booleans().map(lambda incomplete: not incomplete) | st.just(True))
    behind = draw(st.integers(1, 9)) if status == "diverged" else 0
    return Comparison(status, len(files) + 1, behind, files, complete=complete)


@dataclass(frozen=True)
class Case:
    trusted: Policy
    own: Policy
    state: ReleaseState
    facts: Facts
    """Gathered with `trusted` and `own`; the "alone" decisions swap the policies only."""

    def combined(self) -> Verdict:
        return judge(self.facts, self.state)

    def trusted_alone(self) -> Verdict:
        """As if the SHA carried the trusted policy itself (or none)."""
        facts = Facts(**{**_fields(self.facts), "own": None})
        return judge(facts, self.state)

    def own_alone(self) -> Verdict:
        """The SHA's own policy, with the keys only the trusted policy decides taken from it."""
        restricted = self.own.model_copy(
            update={key: getattr(self.trusted, key) for key in TRUSTED_ONLY}
        )
        facts = Facts(**{**_fields(self.facts), "trusted": restricted, "own": None})
        return judge(facts, self.state)


def _fields(facts: Facts) -> dict[str, Any]:
    return {name: getattr(facts, name) for name in Facts.__struct_fields__}


@st.composite
def cases(draw: st.DrawFn) -> Case:
    trusted, own = draw(policies()), draw(policies())
    now = NOW + timedelta(minutes=draw(st.integers(0, 7 * 24 * 60)))
    production = draw(st.sampled_from([None, PRODUCTION, PRODUCTION]))
    dispatched = draw(_subset(DISPATCHABLE, max_size=4))
    ages = sorted(
        (draw(st.integers(1, 180)) for _ in dispatched), reverse=True
    )  # oldest first, as appended
    failed_ago = draw(st.none() | st.integers(1, 600))
    state = ReleaseState(
        repo_id=1,
        repo="octo/app",
        production_sha=production,
        dispatches=tuple(
            Dispatch(sha=sha, intent_id=f"i{n}", at=now - timedelta(minutes=age))
            for n, (sha, age) in enumerate(zip(dispatched, ages, strict=True))
        ),
        failures={}
        if failed_ago is None
        else {
            SHA: Failure(
                sha=SHA,
                first_at=now - timedelta(minutes=failed_ago),
                last_at=now - timedelta(minutes=failed_ago),
            )
        },
        approvals={SHA: (Approval(sha=SHA, by="maintainer", at=now, via="label"),)}
        if draw(st.booleans())
        else {},
        emergency_freeze=EmergencyFreeze(reason="incident", by="oncall", at=now)
        if draw(_rarely()) and draw(_rarely())
        else None,
    )
    comparisons = {
        base: draw(_comparison(["ahead"] * 6 + ["diverged", "behind"]))
        for base in sorted(bases_needed(state, SHA))
    }
    facts = Facts(
        sha=SHA,
        production_sha=production,
        trusted=trusted,
        trusted_source=f"production {production}" if production else "refs/heads/main",
        own=own,
        comparisons=comparisons,
        own_change=draw(_comparison(["ahead"])) if production is None else None,
        degraded_labels=frozenset(draw(_subset(LABELS))),
        now=now,
    )
    return Case(trusted, own, state, facts)


@settings(max_examples=300, deadline=None)
@given(case=cases())
def test_an_allow_under_both_policies_is_an_allow_under_each_alone(case: Case) -> None:
    if case.combined().decision.allowed:
        assert case.trusted_alone().decision.allowed
        assert case.own_alone().decision.allowed


@settings(max_examples=300, deadline=None)
@given(case=cases())
def test_an_allow_under_each_policy_alone_is_an_allow_under_both(case: Case) -> None:
    """The sanity converse: a gate that held everything would pass the property above."""
    if case.trusted_alone().decision.allowed and case.own_alone().decision.allowed:
        assert case.combined().decision.allowed


@pytest.mark.parametrize(
    ("trusted_allows", "own_allows"),
    [(True, True), (True, False), (False, True)],
    ids=["both-allow", "only-trusted-allows", "only-own-allows"],
)
def test_the_case_strategy_reaches_every_mix_of_verdicts(
    trusted_allows: bool, own_allows: bool
) -> None:
    """The properties above are not vacuous: each side alone can decide the combined verdict."""
    found = find(
        cases(),
        lambda c: (
            c.trusted_alone().decision.allowed is trusted_allows
            and c.own_alone().decision.allowed is own_allows
        ),
        settings=settings(max_examples=5000, database=None, deadline=None),
    )
    assert found.combined().decision.allowed is (trusted_allows and own_allows)


# =========================================================================================
# 2. Interleavings of concurrent evaluations, one step at a time, on the real local store
# =========================================================================================

REPO_ID = 7
REPO = "octo/app"
OLDER = 3
"""Commits before production's: a0..a2, then c0 (production) .. c7."""
HISTORY = LinearHistory(OLDER + 8)
PRODUCTION_INDEX = OLDER


@dataclass
class Evaluation:
    """One evaluation of one SHA: gathered at one step, committed at a later one."""

    sha: str
    now: datetime
    intent: str
    gathered_on: ReleaseState | None = None
    facts: Facts | None = None
    outcome: str = "pending"


def gather(ledger: Ledger, policy: Policy, evaluation: Evaluation) -> None:
    """Read the state and gather the facts for it, as the verification flow's read wave does."""
    state = ledger.read_state(REPO_ID, REPO)
    evaluation.gathered_on = state
    if state.production_sha == evaluation.sha or state.dispatch_for(evaluation.sha):
        evaluation.outcome = "nothing to decide"
        return
    evaluation.facts = facts_for(HISTORY, state, evaluation.sha, policy, evaluation.now)


def commit(ledger: Ledger, policy: Policy, evaluation: Evaluation, *, redecide: bool) -> None:
    """Decide again inside the conditional write and record the intent if allowed.

    On StaleFacts gather once more on the fresh state and try again; stale twice: hold.
    `redecide=False` is the broken variant (decision made on the gathered state, intent
    written on the fresh one): the tests show the invariants catch it.
    """
    if evaluation.facts is None:
        return
    try:
        evaluation.outcome = _commit_once(ledger, evaluation, evaluation.facts, redecide)
    except StaleFacts:
        fresh = ledger.read_state(REPO_ID, REPO)
        evaluation.gathered_on = fresh
        facts = facts_for(HISTORY, fresh, evaluation.sha, policy, evaluation.now)
        try:
            evaluation.outcome = _commit_once(ledger, evaluation, facts, redecide)
        except StaleFacts:
            evaluation.outcome = "held: the state changed twice"


def _commit_once(ledger: Ledger, evaluation: Evaluation, facts: Facts, redecide: bool) -> str:
    outcome = ["unknown"]

    def decide_on(state: ReleaseState) -> ReleaseState:
        if state.production_sha == facts.sha or state.dispatch_for(facts.sha) is not None:
            outcome[0] = "nothing to decide"
            return state
        assert evaluation.gathered_on is not None
        verdict = judge(facts, state if redecide else evaluation.gathered_on)
        outcome[0] = f"{verdict.decision.outcome.value} {verdict.decision.reason.value}"
        if not verdict.decision.allowed:
            return state
        return record_intent(
            state, facts.sha, evaluation.intent, facts.now, workflow="deploy.yml", ref="main"
        )

    ledger.transition(REPO_ID, REPO, decide_on)
    return outcome[0]


def invariant_violations(
    state: ReleaseState, max_per_hour: int, production: str, preexisting: int
) -> list[str]:
    """What is wrong with the final state: too many dispatches in an hour, or a rollback."""
    problems = []
    times = [d.at for d in state.dispatches]
    for end in times:
        in_hour = [t for t in times if end - RATE_WINDOW < t <= end]
        if len(in_hour) > max_per_hour:
            problems.append(f"{len(in_hour)} dispatches in the hour up to {end:%H:%M:%S}")
    order = [HISTORY.index(d.sha) for d in state.dispatches]
    for (i, earlier), (j, later) in itertools.combinations(enumerate(order), 2):
        if later <= earlier:
            problems.append(f"dispatch #{j} (commit {later}) after #{i} (commit {earlier})")
    for d in state.dispatches[preexisting:]:
        if HISTORY.is_ancestor_or_equal(d.sha, production):
            problems.append(f"dispatch of commit {HISTORY.index(d.sha)}, production's ancestor")
    repeated = [sha for sha, n in Counter(d.sha for d in state.dispatches).items() if n > 1]
    if repeated:
        problems.append(f"dispatched more than once: {repeated}")
    return problems


@dataclass(frozen=True)
class Scenario:
    max_per_hour: int
    preexisting_ages: tuple[int, ...]
    """Minutes before NOW of the dispatches already made, oldest first (the last is c0's)."""
    evaluations: tuple[tuple[int, int], ...]
    """(commit index, minutes after NOW its clock reads) per evaluation."""
    steps: tuple[int, ...]
    """Evaluation numbers; an evaluation's first step gathers, its second commits."""


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    max_per_hour = draw(st.integers(1, 4))
    preexisting = draw(st.integers(0, min(max_per_hour, OLDER + 1)))
    ages = draw(
        st.lists(st.integers(1, 59), min_size=preexisting, max_size=preexisting, unique=True)
    )
    evaluations = draw(
        st.lists(
            st.tuples(st.integers(0, HISTORY.length - 1), st.integers(0, 90)),
            min_size=1,
            max_size=8,
        )
    )
    steps = draw(st.permutations([n for n in range(len(evaluations)) for _ in (0, 1)]))
    return Scenario(
        max_per_hour, tuple(sorted(ages, reverse=True)), tuple(evaluations), tuple(steps)
    )


def run_scenario(store_root: Path, scenario: Scenario, *, redecide: bool = True) -> list[str]:
    """Play the scenario's steps on a fresh local store; the invariant violations at the end."""
    ledger = Ledger(open_store(store_root.as_uri()))
    policy = low_risk_policy(scenario.max_per_hour)
    production = HISTORY.shas[PRODUCTION_INDEX]
    preexisting = len(scenario.preexisting_ages)
    dispatched_before = HISTORY.shas[PRODUCTION_INDEX + 1 - preexisting : PRODUCTION_INDEX + 1]
    initial = ReleaseState(
        repo_id=REPO_ID,
        repo=REPO,
        production_sha=production,
        production_at=NOW - timedelta(minutes=1),
        dispatches=tuple(
            Dispatch(
                sha=sha,
                intent_id=f"earlier-{n}",
                at=NOW - timedelta(minutes=age),
                run_id=n + 1,
                workflow="deploy.yml",
                ref="main",
            )
            for n, (sha, age) in enumerate(
                zip(dispatched_before, scenario.preexisting_ages, strict=True)
            )
        ),
    )
    ledger.transition(REPO_ID, REPO, lambda _state: initial)
    evaluations = [
        Evaluation(HISTORY.shas[index], NOW + timedelta(minutes=later), f"intent-{n}")
        for n, (index, later) in enumerate(scenario.evaluations)
    ]
    started: set[int] = set()
    for n in scenario.steps:
        if n in started:
            commit(ledger, policy, evaluations[n], redecide=redecide)
        else:
            started.add(n)
            gather(ledger, policy, evaluations[n])
    final = ledger.read_state(REPO_ID, REPO)
    return invariant_violations(final, scenario.max_per_hour, production, preexisting)


# An experiment run while writing this (not kept as a property, since it only shows that a
# broken variant fails): with `redecide=False` (the decision made on the gathered state,
# the intent still recorded in the conditional write, on the fresh state) the property
# below failed in 27 of 150 generated scenarios, both ways. Hypothesis shrank them to two
# evaluations gathered on the same state and committed one after the other: c1 and c2
# with max_per_hour=1 -> ["2 dispatches in the hour up to 14:00:00"] (twice), and c2
# committed before c1 -> ["dispatch #1 (commit 4) after #0 (commit 5)"]. The two tests
# after the property pin both down, for the real commit and for the broken one.
@settings(max_examples=150, deadline=None)
@given(scenario=scenarios())
def test_interleaved_evaluations_keep_the_rate_limit_and_never_roll_back(
    tmp_path_factory: pytest.TempPathFactory, scenario: Scenario
) -> None:
    store_root = tmp_path_factory.mktemp("interleaving")
    assert run_scenario(store_root, scenario) == []


def _gathered_together(first: int, second: int, max_per_hour: int) -> Scenario:
    """Two evaluations both gather on the initial state, then `first` commits, then `second`."""
    return Scenario(max_per_hour, (), ((first, 0), (second, 0)), (0, 1, 0, 1))


@pytest.mark.parametrize("redecide", [True, False], ids=["re-decided", "decided-on-gathered"])
def test_a_decision_not_made_again_on_the_fresh_state_rolls_back(
    tmp_path: Path, redecide: bool
) -> None:
    # c5 commits first, then c3, which was gathered before c5's intent existed.
    scenario = _gathered_together(PRODUCTION_INDEX + 5, PRODUCTION_INDEX + 3, max_per_hour=4)
    violations = run_scenario(tmp_path, scenario, redecide=redecide)
    if redecide:
        assert violations == []
    else:
        assert violations == ["dispatch #1 (commit 6) after #0 (commit 8)"]


@pytest.mark.parametrize("redecide", [True, False], ids=["re-decided", "decided-on-gathered"])
def test_a_decision_not_made_again_on_the_fresh_state_breaks_the_rate_limit(
    tmp_path: Path, redecide: bool
) -> None:
    scenario = _gathered_together(PRODUCTION_INDEX + 3, PRODUCTION_INDEX + 5, max_per_hour=1)
    violations = run_scenario(tmp_path, scenario, redecide=redecide)
    if redecide:
        assert violations == []
    else:
        assert violations == ["2 dispatches in the hour up to 14:00:00"] * 2


# =========================================================================================
# 3. Sixteen processes run the real verification flow at once, on every backend
# =========================================================================================

WORKERS = 16
MAX_PER_HOUR = 3
_SPAWN = multiprocessing.get_context("spawn")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sixteen_processes_evaluating_sixteen_shas_keep_the_invariants(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """c1..c16 evaluated at once by 16 processes running the real service, production at c0.

    Checked against a copy of the service whose conditional write judged on the state
    gathered instead of the one being replaced: all 16 SHAs got an intent and were
    dispatched ("assert 16 <= 3" below), so this test does see a missing re-decision.
    """
    history = LinearHistory(WORKERS + 1)
    c = history.shas
    with ExitStack() as stack:
        proxy = None
        if store_url.startswith("s3://"):
            # moto alone lets two concurrent conditional PUTs both succeed; real S3 does not.
            proxy = stack.enter_context(serial_proxy(os.environ["AWS_ENDPOINT_URL"]))
            monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)  # the workers inherit it
        ledger = Ledger(open_store(store_url))
        ledger.transition(
            evaluate_worker.REPO_ID,
            evaluate_worker.REPO_NAME,
            lambda s: deploy_succeeded(s, c[0], NOW - timedelta(hours=2)),
        )
        ready, gathered = _SPAWN.Barrier(WORKERS), _SPAWN.Barrier(WORKERS)
        logs = [tmp_path / f"dispatched-{n}.json" for n in range(WORKERS)]
        policy_text = LOW_RISK_POLICY.format(max_per_hour=MAX_PER_HOUR)
        reports = workers.run_processes(
            evaluate_worker.evaluate_sha,
            [
                (store_url, n, history.length, c[n + 1], policy_text, NOW.isoformat(), *rest)
                for n, rest in enumerate((str(log), ready, gathered) for log in logs)
            ],
            timeout_s=600,
        )
        state = ledger.read_state(evaluate_worker.REPO_ID, evaluate_worker.REPO_NAME)
        if proxy is not None:
            assert proxy.conditional_puts > 0, "the workers' writes did not go through the proxy"

    intents = state.dispatches
    assert state.production_sha == c[0]
    # Rate limit: at most 3 intents in the hour (the clock is NOW in every worker).
    assert 1 <= len(state.dispatches_since(NOW - RATE_WINDOW)) <= MAX_PER_HOUR
    assert len(intents) <= MAX_PER_HOUR
    # Every dispatch had its intent, every intent was dispatched exactly once, with its run.
    logged = [d for log in logs if log.exists() for d in json.loads(log.read_text())]
    reported = [d for report in reports for d in report["dispatched"]]
    assert sorted(logged, key=str) == sorted(reported, key=str)
    assert Counter(d["sha"] for d in reported) == Counter(d.sha for d in intents)
    assert {d["sha"]: d["run_id"] for d in reported} == {d.sha: d.run_id for d in intents}
    assert all(n == 1 for n in Counter(d.sha for d in intents).values())
    # No rollback: each intent is newer than every one before it, and than production.
    order = [history.index(d.sha) for d in intents]
    assert order == sorted(order) and len(set(order)) == len(order) and order[0] > 0
    # Every worker either dispatched or held for a reason of this race.
    by_sha = {report["sha"]: report for report in reports}
    for sha, report in by_sha.items():
        outcome = report["outcome"]
        assert outcome["result"] == "decided", outcome
        if outcome["decision"] == "ALLOW":
            assert outcome["dispatch"].startswith("dispatched run"), outcome
            assert any(d.sha == sha for d in intents)
        else:
            assert outcome["reason"] in {
                Reason.RATE_LIMIT.value,
                Reason.SUPERSEDED.value,
                Reason.GOVERNOR_ERROR.value,  # the state moved on twice while deciding
            }, outcome
            assert all(d.sha != sha for d in intents)
    # Something raced: everyone gathered on the same state (the barrier inside the gather),
    # so every worker but the first to write committed on a state newer than it gathered on.
    raced = [
        r["worker"]
        for r in reports
        if any(version != r["read_versions"][0] for version in r["transitions"][0])
    ]
    assert len(raced) >= WORKERS - 1, reports
    assert sum(r["stale"] for r in reports) >= WORKERS - 1


# -- the proxy that makes moto's conditional PUTs atomic ---------------------------------

S3_BUCKET = "governor-proxy-test"
THREADS, INCREMENTS = 16, 5


@contextmanager
def _moto_switching_threads_often() -> Iterator[str]:
    """moto's server with the interpreter switching threads every microsecond.

    moto checks If-Match and then stores the object a few lines later; a thread switch
    between the two is what lets two conditional PUTs both succeed. Switching often makes
    that window (always there) show up within a few rounds instead of once in a while.
    """
    port = emulators.free_port()
    url = f"http://127.0.0.1:{port}"
    code = (
        "import sys; sys.setswitchinterval(1e-6); "
        f"sys.argv = ['moto_server', '-H', '127.0.0.1', '-p', '{port}']; "
        "from moto.server import main; main()"
    )
    with emulators._server([sys.executable, "-c", code], f"{url}/moto-api/", emulators.S3_ENV):
        emulators.create_s3_bucket(url, S3_BUCKET)
        yield url


def _increment_concurrently(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> int:
    """16 threads add 5 each to one counter with conditional PUTs; the count it ends at."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    url = f"s3://{S3_BUCKET}/t-{uuid.uuid4().hex[:12]}"
    stores = [open_store(url) for _ in range(THREADS)]  # boto3 clients: made one at a time
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def work(store: Any) -> None:
        try:
            start.wait(60)
            for _ in range(INCREMENTS):
                update(store, "counter.json", workers.increment_document)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not errors and not any(t.is_alive() for t in threads), errors
    current = stores[0].get("counter.json")
    assert current is not None
    return int(json.loads(current.data)["count"])


@pytest.mark.slow
def test_conditional_puts_through_the_proxy_never_lose_an_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in emulators.S3_ENV.items():
        monkeypatch.setenv(name, value)
    expected = THREADS * INCREMENTS
    with _moto_switching_threads_often() as moto:
        # Needed: straight to moto, two conditional PUTs on one ETag can both succeed.
        counts = []
        for _attempt in range(12):
            counts.append(_increment_concurrently(monkeypatch, moto))
            if counts[-1] < expected:
                break
        assert counts[-1] < expected, f"moto never lost an update: {counts}"
        # Sufficient: through the proxy every increment counts.
        with serial_proxy(moto) as proxy:
            assert _increment_concurrently(monkeypatch, proxy.url) == expected
            assert proxy.conditional_puts >= expected


# -- a dispatch that never started is decided again, not simply repeated ----------------


def test_a_dispatch_that_never_started_is_decided_again_not_repeated(tmp_path: Path) -> None:
    """An intent whose instance died before dispatching used to be re-dispatched as it
    was, after the lease: an older SHA after a newer one, past the hourly limit."""
    from governor.flows.context import Context, Repo
    from governor.flows.results import to_json
    from governor.flows.verification import evaluate
    from governor.settings import AppSettings
    from governor.state import deploy_succeeded, record_intent

    url = (tmp_path / "store").as_uri()
    ledger = Ledger(open_store(url))
    history = LinearHistory(3)
    c0, c1, c2 = history.shas
    start = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
    now = [start]
    api = FakeRepoApi(history, LOW_RISK_POLICY.format(max_per_hour=1), 0, tmp_path / "d.json")
    settings_ = AppSettings(store_url=url, webhook_secret="x" * 32)
    ctx = Context(settings_, ledger, FakeGitHubPort(api), lambda: now[0])
    repo = Repo(1, "octo/app", "main", 1, api)  # type: ignore[arg-type]
    ledger.transition(1, "octo/app", lambda s: deploy_succeeded(s, c0, start - timedelta(hours=3)))
    ledger.transition(
        1,
        "octo/app",
        lambda s: record_intent(s, c1, "died", start, workflow="deploy.yml", ref="main"),
    )

    now[0] = start + timedelta(minutes=61)  # c1's intent has left the hour: c2 may go
    assert (
        to_json(evaluate(ctx, repo, c2, trigger="verified", delivery=None))["decision"] == "ALLOW"
    )
    now[0] = start + timedelta(minutes=65)  # c1 again, long after its lease
    again = to_json(evaluate(ctx, repo, c1, trigger="reconcile", delivery=None))

    assert again["reason"] == "superseded", again
    assert [d["sha"] for d in api.dispatched] == [c2]
    state = ledger.read_state(1, "octo/app")
    assert [d.sha for d in state.dispatches] == [c2]  # the dead intent is gone, not re-timed


def test_a_dispatch_that_never_started_goes_again_when_the_gate_allows_it(
    tmp_path: Path,
) -> None:
    from governor.flows.context import Context, Repo
    from governor.flows.results import to_json
    from governor.flows.verification import evaluate
    from governor.settings import AppSettings
    from governor.state import deploy_succeeded, record_intent

    url = (tmp_path / "store").as_uri()
    ledger = Ledger(open_store(url))
    history = LinearHistory(2)
    c0, c1 = history.shas
    start = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
    api = FakeRepoApi(history, LOW_RISK_POLICY.format(max_per_hour=1), 0, tmp_path / "d.json")
    settings_ = AppSettings(store_url=url, webhook_secret="x" * 32)
    later = start + timedelta(minutes=5)
    ctx = Context(settings_, ledger, FakeGitHubPort(api), lambda: later)
    repo = Repo(1, "octo/app", "main", 1, api)  # type: ignore[arg-type]
    ledger.transition(1, "octo/app", lambda s: deploy_succeeded(s, c0, start - timedelta(hours=3)))
    ledger.transition(
        1,
        "octo/app",
        lambda s: record_intent(s, c1, "died", start, workflow="deploy.yml", ref="main"),
    )

    again = to_json(evaluate(ctx, repo, c1, trigger="reconcile", delivery=None))

    # Its own dead intent does not count against the limit of 1: it is replaced.
    assert again["result"] == "redispatched" and again["decision"] == "ALLOW", again
    assert [d["sha"] for d in api.dispatched] == [c1]
    state = ledger.read_state(1, "octo/app")
    assert [(d.sha, d.at) for d in state.dispatches] == [(c1, later)]
