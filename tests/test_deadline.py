"""The webhook's time budget: one deadline per request, over GitHub calls and store waits.

Unit: the context variable (unset, nested, seen by the read wave's threads, the grace of
a cut request). GitHub client against the fake GitHub, slow on purpose. The local store
with its lock held by another process. Over HTTP: functions-framework serving
`github_webhook` with a 2 s budget while GitHub is slow: a 503 well before GitHub's
10 s, nothing half done, and the redelivery decides and dispatches once.

Wall-clock bounds are generous (many times the budget's margin, far below what waiting
without the deadline would take); nothing sleeps to synchronise.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from governor import deadline
from governor.deadline import DeadlineExceeded
from governor.flows.context import wave
from governor.github.api import GitHubApp, RepoApi
from governor.github.client import GitHubClient, OutcomeUnknown, OutcomeUnknownPastDeadline
from governor.ledger import Ledger
from governor.store import WriteContention, open_store, update
from governor.store.local import LOCK_NAME, LocalStore

from tests.support.e2e import deployed_base, function_env, new_repo
from tests.support.fake_github import FakeGitHub, FakeRepo
from tests.support.functions_server import serve_function
from tests.support.governed import Governed
from tests.support.keys import rsa_key_pair

APP_ID = "31338"
SHA1, SHA2 = "1" * 40, "2" * 40
COMPARE = "repos/compare-commits-with-basehead"

GENEROUS_S = 4.0
"""Upper bound of "it ended at about the deadline" for a 1 s deadline: well below the
5 s (GitHub) or 30 s (store) it would have waited without one."""


# -- the context variable ------------------------------------------------------------------


def test_without_a_deadline_nothing_is_bounded() -> None:
    assert deadline.remaining() is None
    assert deadline.bounded(30.0) == 30.0
    deadline.check("nothing to check")  # no-op


def test_within_sets_and_resets_and_nested_never_extends() -> None:
    with deadline.within(2):
        outer = deadline.remaining()
        assert outer is not None and 0 < outer <= 2
        assert deadline.bounded(30.0) <= 2 and deadline.bounded(0.5) == 0.5
        with deadline.within(100):  # looser: the outer one still binds
            inner = deadline.remaining()
            assert inner is not None and inner <= 2
        with deadline.within(0.5):  # tighter: binds inside, not after
            inner = deadline.remaining()
            assert inner is not None and inner <= 0.5
        after = deadline.remaining()
        assert after is not None and 0.5 < after <= 2
    assert deadline.remaining() is None


def test_past_the_deadline_check_raises_and_the_way_out_gets_a_grace() -> None:
    with deadline.within(1e-9):
        assert deadline.remaining() == 0
        assert deadline.remaining(grace=True) == 0  # not cut yet: no grace
        with pytest.raises(DeadlineExceeded, match="time budget"):
            deadline.check("at the test")
        grace = deadline.remaining(grace=True)
        assert grace is not None and 0 < grace <= deadline.GRACE_S
        assert deadline.remaining() == 0  # GitHub calls get no grace


def test_the_read_waves_threads_share_the_deadline_and_its_cut() -> None:
    with deadline.within(2):
        with wave() as w:
            seen = w.read(deadline.remaining)
        left = seen.result()
        assert left is not None and 0 < left <= 2
        with ThreadPoolExecutor(1) as plain:  # a bare pool does not: why wave() copies
            assert plain.submit(deadline.remaining).result() is None

    with deadline.within(1e-9):
        with wave() as w:
            cut = w.read(lambda: deadline.check("in a wave thread"))
        with pytest.raises(DeadlineExceeded):
            cut.result()
        # The cut seen in the wave thread is the request's: its release gets the grace.
        grace = deadline.remaining(grace=True)
        assert grace is not None and grace > 0


# -- GitHub client -----------------------------------------------------------------------


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    _private, public = rsa_key_pair()
    with FakeGitHub(app_id=APP_ID, public_key_pem=public) as fake:
        yield fake
        assert fake.violations == []


@pytest.fixture
def repo(github: FakeGitHub) -> FakeRepo:
    repo = github.add_repo("octo", "slow", repo_id=88, installation_id=4)
    repo.add_commit(SHA1, files=[{"filename": "README.md", "status": "added"}])
    repo.add_commit(SHA2, files=[{"filename": "src/a.py", "status": "added"}])
    repo.add_workflow("deploy.yml", name="Deploy", workflow_id=1)
    return repo


@pytest.fixture
def api(github: FakeGitHub, repo: FakeRepo) -> RepoApi:
    private, _public = rsa_key_pair()
    api = GitHubApp(github.url, APP_ID, private, timeout_s=10).repo(4, "octo/slow")
    api.repository()  # the installation token is fetched and cached before the clock runs
    return api


def test_a_slow_read_ends_at_the_deadline_not_at_its_timeout(
    github: FakeGitHub, api: RepoApi
) -> None:
    github.slow_next(COMPARE, 5)
    started = time.monotonic()
    with deadline.within(1), pytest.raises(DeadlineExceeded, match="compare"):
        api.compare(SHA1, SHA2)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < GENEROUS_S, elapsed
    assert len(github.calls_to(COMPARE)) == 1, "a read cut by the deadline is not retried"


def test_retries_of_a_failing_read_do_not_run_past_the_deadline(
    github: FakeGitHub, api: RepoApi
) -> None:
    # Every answer is a slow 502: without the deadline, three attempts and two backoffs.
    github.fail_next(COMPARE, 502, times=3, delay_s=0.6)
    started = time.monotonic()
    with deadline.within(1), pytest.raises(DeadlineExceeded):
        api.compare(SHA1, SHA2)
    elapsed = time.monotonic() - started
    assert elapsed < GENEROUS_S, elapsed
    assert len(github.calls_to(COMPARE)) <= 2


def test_no_backoff_or_rate_limit_wait_is_started_that_would_end_past_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(random, "uniform", lambda _low, high: high)  # the longest pauses
    answers = iter([httpx.Response(429, headers={"retry-after": "5"})] + [httpx.Response(502)] * 10)
    pauses: list[tuple[float, float]] = []  # (when it would end, the deadline's end)
    ends_at = time.monotonic() + 1.0

    def sleep(seconds: float) -> None:
        pauses.append((time.monotonic() + seconds, ends_at))

    client = GitHubClient(
        "https://github.invalid",
        lambda: "token t",
        timeout_s=10,
        read_attempts=10,
        transport=httpx.MockTransport(lambda _request: next(answers)),
        sleep=sleep,  # records, does not wait: the clock is not what is tested here
    )
    with deadline.within(1.0), pytest.raises(DeadlineExceeded, match="rate limited"):
        client.get("/repos/o/r")  # the 5 s retry-after is not waited out
    assert pauses == []

    # 502s: the first backoff (0.5 s) fits in the second left, the next (1 s) does not.
    answers = iter([httpx.Response(502)] * 10)
    ends_at = time.monotonic() + 1.0
    with deadline.within(1.0), pytest.raises(DeadlineExceeded, match="before retrying"):
        client.get("/repos/o/r")
    assert len(pauses) == 1 and all(end <= limit for end, limit in pauses), pauses


def test_a_write_cut_in_flight_is_an_unknown_outcome_and_a_deadline(
    github: FakeGitHub, repo: FakeRepo, api: RepoApi
) -> None:
    github.slow_next("actions/create-workflow-dispatch", 5)
    started = time.monotonic()
    with deadline.within(1), pytest.raises(OutcomeUnknownPastDeadline) as cut:
        api.dispatch("deploy.yml", "refs/heads/main", {"sha": SHA2})
    assert time.monotonic() - started < GENEROUS_S
    # The dispatch flow treats it as OutcomeUnknown (look for the run before redoing it),
    # the webhook as DeadlineExceeded (503, transient).
    assert isinstance(cut.value, OutcomeUnknown) and isinstance(cut.value, DeadlineExceeded)
    assert len(repo.dispatched_runs("deploy.yml")) == 1, "the fake did dispatch"


def test_a_write_is_not_sent_past_the_deadline(github: FakeGitHub, api: RepoApi) -> None:
    with deadline.within(1e-9), pytest.raises(DeadlineExceeded) as refused:
        api.dispatch("deploy.yml", "refs/heads/main", {"sha": SHA2})
    assert not isinstance(refused.value, OutcomeUnknown), "nothing was sent: nothing unknown"
    assert github.calls_to("actions/create-workflow-dispatch") == []


# -- store ---------------------------------------------------------------------------------

_HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()  # holds the lock until the test closes stdin (or kills it)
"""


@contextmanager
def lock_held_by_another_process(root: Path) -> Iterator[subprocess.Popen[str]]:
    root.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(root / LOCK_NAME)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_store_write_waits_for_the_lock_only_until_the_deadline(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = LocalStore(root, write_timeout_s=30)
    with lock_held_by_another_process(root) as holder:
        started = time.monotonic()
        with deadline.within(1):
            with pytest.raises(DeadlineExceeded, match="lock") as cut:
                update(store, "repos/1/state.json", lambda _old: b"new")
            elapsed = time.monotonic() - started
            assert not isinstance(cut.value, WriteContention)
            assert 0.9 <= elapsed < GENEROUS_S, elapsed  # not the 30 s write timeout

            # The request was cut: the write on its way out (a claim's release) still gets
            # through within the grace once the lock is free.
            holder.kill()
            holder.wait()
            written = update(store, "repos/1/state.json", lambda _old: b"released")
            assert written.written
    assert store.get("repos/1/state.json") is not None


def test_without_a_deadline_the_store_keeps_its_write_timeout(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = LocalStore(root, write_timeout_s=0.5)  # the CLI's would be 30 s
    with lock_held_by_another_process(root):
        with pytest.raises(WriteContention, match="GOVERNOR_WRITE_TIMEOUT_S"):
            update(store, "k", lambda _old: b"x")
        with deadline.within(60), pytest.raises(WriteContention):  # the timeout binds
            update(store, "k", lambda _old: b"x")


# -- over HTTP: github_webhook with a 2 s budget -------------------------------------------

WEBHOOK_DEADLINE_S = 2.0


@pytest.fixture(scope="module", params=["local", "gcs"])
def budget_webhook(
    request: pytest.FixtureRequest, fake: FakeGitHub, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(webhook URL, store URL): the function with a 2 s budget and GitHub's own 10 s timeout."""
    if request.param == "gcs":
        store_url = request.getfixturevalue("gcs_store_url")
    else:
        store_url = tmp_path_factory.mktemp("deadline-store").as_uri()
    env = function_env(
        fake,
        store_url,
        GOVERNOR_WEBHOOK_DEADLINE_S=str(WEBHOOK_DEADLINE_S),
        GOVERNOR_GITHUB_TIMEOUT_S="10",
    )
    with serve_function("github_webhook", env) as server:
        yield server.url, store_url


def test_slow_github_answers_503_in_budget_and_leaves_nothing_half_done(
    fake: FakeGitHub, budget_webhook: tuple[str, str], request: pytest.FixtureRequest
) -> None:
    webhook_url, store_url = budget_webhook
    gov: Governed = new_repo(fake, store_url, webhook_url)
    deployed_base(gov)
    sha = gov.commit("slow-compare", ["src/app.py"])
    payload, guid = gov.verified(sha), str(uuid.uuid4())
    warm = new_repo(fake, store_url, webhook_url)  # same installation: token, imports warm
    deployed_base(warm)
    assert warm.send(warm.verified(warm.commit("warm-up", ["docs/x.md"]))).status_code == 202
    fake.slow_next(COMPARE, 8)  # GitHub takes 8 s for it; the function's timeout is 10 s

    started = time.monotonic()
    cut = gov.send(payload, guid=guid)
    cut_s = time.monotonic() - started

    assert cut.status_code == 503, cut.text
    assert "GOVERNOR_WEBHOOK_DEADLINE_S" in cut.json()["error"] and cut.json()["delivery"] == guid
    assert cut_s < 6.0, f"answered after {cut_s:.2f} s: GitHub gives up at 10 s"
    # Nothing half done: no decision, hold, intent or status; the claim released.
    state = gov.state()
    assert sha not in state.holds and state.dispatch_for(sha) is None
    assert gov.our_statuses(sha) == [] and gov.dispatches() == []
    record = Ledger(open_store(store_url)).read_decision(gov.repo.repo_id, sha)
    assert record is not None and record.latest is None
    [claim] = record.claims.values()
    assert claim.status == "processing" and claim.lease_until <= datetime.now(UTC)

    # GitHub does not redeliver by itself; reconcile's redelivery is the same body and GUID.
    started = time.monotonic()
    again = gov.send(payload, guid=guid)
    again_s = time.monotonic() - started

    assert again.status_code == 202, again.text
    assert again.json()["decision"] == "ALLOW"
    assert len(gov.dispatches()) == 1
    live = gov.state().dispatch_for(sha)
    assert live is not None and live.run_id is not None
    assert [s["state"] for s in gov.our_statuses(sha)] == ["success"]
    assert fake.violations == []
    print(  # the measured times, for the report (pytest -s)
        f"\n[{request.node.callspec.id}] budget {WEBHOOK_DEADLINE_S:g} s: 503 after "
        f"{cut_s:.2f} s (GitHub slow for 8 s); redelivery 202 after {again_s:.2f} s"
    )
