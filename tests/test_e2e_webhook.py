"""End to end over HTTP: GitHub (fake) -> github_webhook (functions-framework) -> store.

The function runs in its own process on loopback, exactly as `make run` serves it; the
store is fake-gcs-server (and, for the first scenario, the local store too); GitHub is
the fake, which checks every request against GitHub's OpenAPI description. Each
scenario asserts what GitHub received and what the store holds.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from governor.ledger import Ledger, state_key
from governor.state import ReleaseState
from governor.store import open_store, update

from tests.support.e2e import SECRET, deployed_base, function_env, new_repo
from tests.support.fake_github import FakeGitHub
from tests.support.functions_server import kill_hard, serve_function
from tests.support.governed import BASE_POLICY, DEPLOY_FILE, WEBHOOKS, Governed

# -- scenarios ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["gcs", "local"])
def test_low_change_is_allowed_and_dispatched_exactly_once(
    request: pytest.FixtureRequest, fake: FakeGitHub, backend: str
) -> None:
    store_url = request.getfixturevalue(f"{backend}_store_url")
    webhook = request.getfixturevalue(f"{backend}_webhook")
    gov = new_repo(fake, store_url, webhook)
    deployed_base(gov)
    sha = gov.commit("low", ["src/app.py"])

    response = gov.send(gov.verified(sha))

    assert response.status_code == 202, response.text
    assert response.json()["decision"] == "ALLOW" and response.json()["reason"] == "allow_low"
    dispatches = gov.dispatches()
    assert len(dispatches) == 1
    assert dispatches[0]["inputs"] == {"sha": sha} and dispatches[0]["ref"] == "refs/heads/main"
    statuses = gov.our_statuses(sha)
    assert [s["state"] for s in statuses] == ["success"]
    assert "allow_low" in statuses[0]["description"]
    run = gov.repo.dispatched_runs(DEPLOY_FILE)[0]
    live = gov.state().dispatch_for(sha)
    assert live is not None and live.run_id == run["id"]
    record = Ledger(open_store(store_url)).read_decision(gov.repo.repo_id, sha)
    assert record is not None and record.latest is not None
    assert record.latest.reason == "allow_low"
    assert fake.violations == []


def test_deploy_success_moves_production_and_an_older_sha_is_superseded(gov: Governed) -> None:
    base = deployed_base(gov)
    sha = gov.commit("new", ["src/app.py"])
    assert gov.send(gov.verified(sha)).status_code == 202
    run = gov.repo.dispatched_runs(DEPLOY_FILE)[0]

    completed = gov.send(gov.repo.complete_run(run["id"], "success"))

    assert completed.status_code == 202 and completed.json()["result"] == "deployed"
    state = gov.state()
    assert (state.production_sha, state.production_previous_sha) == (sha, base)

    older = gov.send(gov.verified(base))
    assert older.json()["reason"] == "superseded"
    assert len(gov.dispatches()) == 1, "never roll back implicitly"
    assert gov.our_statuses(base)[-1]["state"] == "failure"


def test_high_risk_waits_for_a_maintainer_label(gov: Governed) -> None:
    deployed_base(gov)
    sha = gov.commit("risky", [".github/workflows/ci.yml", "src/app.py"])
    held = gov.send(gov.verified(sha))
    assert held.json()["reason"] == "high_risk_no_approval"
    status = gov.our_statuses(sha)[-1]
    assert status["state"] == "failure" and "deploy-approved" in status["description"]
    assert gov.dispatches() == []

    gov.repo.add_pull(7, user="author", head_sha="f" * 40, merge_commit_sha=sha)
    gov.repo.set_permission("reader", "read")
    gov.repo.set_permission("maint", "maintain")
    by_reader = gov.send(
        gov.repo.label_added_payload(7, "deploy-approved", "reader"), "pull_request"
    )
    assert by_reader.status_code == 200 and by_reader.json()["result"] == "ignored"
    assert gov.dispatches() == []

    by_maintainer = gov.send(
        gov.repo.label_added_payload(7, "deploy-approved", "maint"), "pull_request"
    )

    assert by_maintainer.status_code == 202, by_maintainer.text
    assert by_maintainer.json()["evaluations"][sha]["reason"] == "allow_high_approved"
    assert [d["inputs"] for d in gov.dispatches()] == [{"sha": sha}]
    assert gov.our_statuses(sha)[-1]["state"] == "success"


def test_failed_deploys_open_one_issue_then_comment_and_cool_down(gov: Governed) -> None:
    deployed_base(gov)
    sha = gov.commit("flaky", ["src/app.py"])
    gov.send(gov.verified(sha))
    run = gov.repo.dispatched_runs(DEPLOY_FILE)[0]

    failed = gov.send(gov.repo.complete_run(run["id"], "failure"))

    assert failed.json()["result"] == "deploy_failed"
    issues = [i for i in gov.repo.issues() if "pull_request" not in i]
    assert len(issues) == 1
    assert issues[0]["title"] == f"Deploy failure: {sha[:7]}"
    assert {"deploy-failure", "severity:high", "failure:failure"} <= {
        label["name"] for label in issues[0]["labels"]
    }

    rerun = gov.repo.complete_run(run["id"], "timed_out")
    rerun["workflow_run"]["run_attempt"] = 2  # "Re-run failed jobs" keeps the run id
    again = gov.send(rerun)

    assert again.json()["appended"] is True
    assert len([i for i in gov.repo.issues() if "pull_request" not in i]) == 1
    assert len(gov.repo.comments(issues[0]["number"])) == 1

    reverified = gov.send(gov.verified(sha))
    assert reverified.json()["reason"] == "cooldown"
    assert len(gov.dispatches()) == 1


def test_one_delivery_sent_twenty_times_at_once_dispatches_once(
    fake: FakeGitHub, gcs_store_url: str, gcs_webhook: str
) -> None:
    with serve_function("github_webhook", function_env(fake, gcs_store_url)) as second:
        second_instance = second.url
        gov = new_repo(fake, gcs_store_url, gcs_webhook)
        deployed_base(gov)
        sha = gov.commit("busy", ["src/app.py"])
        payload = gov.verified(sha)
        guid = str(uuid.uuid4())
        instances = [gcs_webhook, second_instance]

        def deliver(i: int) -> httpx.Response:
            return Governed(fake, gov.repo, gcs_store_url, instances[i % 2], SECRET).send(
                payload, guid=guid
            )

        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(deliver, range(20)))

    # 503 only for "in progress elsewhere" (GitHub records it failed: redelivered if the
    # other instance dies); nothing else fails.
    assert all(
        a.status_code in (200, 202)
        or (a.status_code == 503 and a.json()["result"] == "in_progress")
        for a in answers
    ), [a.text for a in answers]
    decided = [a for a in answers if a.json().get("result") == "decided"]
    assert len(decided) == 1
    assert len(gov.dispatches()) == 1
    assert len(gov.our_statuses(sha)) == 1
    assert fake.violations == []


def test_five_deliveries_of_one_run_dispatch_once(gov: Governed) -> None:
    deployed_base(gov)
    sha = gov.commit("five", ["src/app.py"])
    payload = gov.verified(sha)
    with ThreadPoolExecutor(max_workers=5) as pool:
        answers = list(pool.map(lambda _i: gov.send(payload), range(5)))
    results = sorted(a.json()["result"] for a in answers)
    assert results.count("decided") == 1, results
    assert set(results) <= {"decided", "duplicate", "in_progress"}, results
    assert len(gov.dispatches()) == 1
    record = Ledger(open_store(gov.store_url)).read_decision(gov.repo.repo_id, sha)
    assert record is not None
    assert list(record.claims) == [  # one claim for the run, whatever the GUIDs
        f"workflow-run-{gov.repo.repo_id}-{payload['workflow_run']['id']}-1"
    ]
    assert [e.outcome for e in record.evaluations] == ["ALLOW"]


LONG_LEASE_S = 600


def test_instance_killed_between_intent_and_dispatch_dispatches_once_in_the_end(
    fake: FakeGitHub, gcs_store_url: str
) -> None:
    # No time passes in this test except where it says so: a lease no wall clock here can
    # run out (it is run out below by ageing the records the function reads the time off),
    # and a GitHub timeout the doomed instance cannot reach before it is killed (with 2 s,
    # a busy machine could let it time out and dispatch again before the kill).
    env = function_env(
        fake,
        gcs_store_url,
        GOVERNOR_DELIVERY_LEASE_S=str(LONG_LEASE_S),
        GOVERNOR_GITHUB_TIMEOUT_S="30",
    )
    guid = str(uuid.uuid4())
    with serve_function("github_webhook", env) as doomed:
        gov = new_repo(fake, gcs_store_url, doomed.url)
        deployed_base(gov)
        sha = gov.commit("crash", ["src/app.py"])
        # GitHub holds the dispatch request and would refuse it: it never happens.
        fake.fail_next("actions/create-workflow-dispatch", 502, delay_s=60)
        payload = gov.verified(sha)
        sender = threading.Thread(target=lambda: _quietly(lambda: gov.send(payload, guid=guid)))
        sender.start()
        _wait_for(lambda: _dispatch_calls(gov) >= 1)
        kill_hard(doomed)
        sender.join(timeout=30)

    assert gov.dispatches() == []
    orphan = gov.state().dispatch_for(sha)
    assert orphan is not None and orphan.run_id is None, "the intent was written first"

    with serve_function("github_webhook", env) as restarted:
        gov.webhook_url = restarted.url
        # Within the lease, the redelivery finds the dead instance's claim live and waits.
        early = gov.send(payload, guid=guid)
        # 503: GitHub records the attempt as failed, so reconcile would redeliver it.
        assert early.status_code == 503 and early.json()["result"] == "in_progress", early.text
        assert gov.dispatches() == []
        _as_if_time_passed(gov, sha, timedelta(seconds=LONG_LEASE_S + 1))
        retried = gov.send(payload, guid=guid)

    assert retried.status_code == 202, retried.text
    assert retried.json()["result"] == "redispatched"
    assert [d["inputs"] for d in gov.dispatches()] == [{"sha": sha}]
    lookups = [
        c for c in fake.calls_to("actions/list-workflow-runs") if gov.repo.full_name in c.path
    ]
    assert lookups, "it looked for a run before dispatching again"
    live = gov.state().dispatch_for(sha)
    assert live is not None and live.run_id is not None


def test_dispatch_answered_500_then_200_dispatches_once(gov: Governed) -> None:
    deployed_base(gov)
    sha = gov.commit("retry", ["src/app.py"])
    gov.fake.fail_next("actions/create-workflow-dispatch", 500)

    response = gov.send(gov.verified(sha))

    assert response.status_code == 202, response.text
    assert len(gov.dispatches()) == 1
    attempts = [
        c
        for c in gov.fake.calls_to("actions/create-workflow-dispatch")
        if gov.repo.full_name in c.path
    ]
    assert [c.status for c in attempts] == [500, 200]


def test_dispatch_timing_out_is_looked_up_not_repeated(gov: Governed) -> None:
    deployed_base(gov)
    sha = gov.commit("slow", ["src/app.py"])
    # The client gives up after 2 s (GOVERNOR_GITHUB_TIMEOUT_S); the answer comes far later,
    # so even a loaded machine cannot get it to the client in time.
    gov.fake.slow_next("actions/create-workflow-dispatch", 10)

    response = gov.send(gov.verified(sha))

    assert response.status_code == 202, response.text
    calls = [c for c in gov.fake.calls if gov.repo.full_name in c.path]
    dispatch_calls = [c for c in calls if c.operation_id == "actions/create-workflow-dispatch"]
    assert len(dispatch_calls) == 1
    first_lookup = next(
        i for i, c in enumerate(calls) if c.operation_id == "actions/list-workflow-runs"
    )
    assert first_lookup > calls.index(dispatch_calls[0])
    run = gov.repo.dispatched_runs(DEPLOY_FILE)[0]
    live = gov.state().dispatch_for(sha)
    assert live is not None and live.run_id == run["id"]


def test_policy_error_holds_with_the_key_named(gov: Governed) -> None:
    deployed_base(gov)
    sha = gov.commit("typo", ["src/app.py"], policy=BASE_POLICY + "cooldown_minuts: 5\n")
    response = gov.send(gov.verified(sha))
    assert response.json()["reason"] == "policy_invalid"
    assert "cooldown_minuts" in gov.our_statuses(sha)[-1]["description"]
    assert gov.dispatches() == []


def test_runs_that_are_not_verification_are_ignored(gov: Governed) -> None:
    deployed_base(gov)
    sha = gov.commit("other", ["src/app.py"])
    cases: dict[str, dict[str, Any]] = {
        "failed": {"conclusion": "failure"},
        "pull request": {"event": "pull_request"},
        "other branch": {"head_branch": "feature"},
        "other workflow": {"name": "Lint", "path": ".github/workflows/lint.yml"},
        "fork": {"head_repository": {"id": 1, "full_name": "evil/fork"}},
        "null conclusion": {"conclusion": None},
    }
    for case, change in cases.items():
        answer = gov.send(gov.verified(sha, **change))
        assert answer.status_code == 200, (case, answer.text)
        assert answer.json()["result"] == "ignored", case
    assert gov.dispatches() == [] and gov.our_statuses(sha) == []


def test_every_example_payload_is_answered_without_a_5xx(gov: Governed) -> None:
    for path in sorted(WEBHOOKS.glob("*.json")):
        event = path.name.split(".")[0]
        payload = json.loads(path.read_text())
        answer = gov.send(payload, event)
        assert answer.status_code < 500, (path.name, answer.text)
        with_installation = {**payload, "installation": {"id": 999}}
        answer = gov.send(with_installation, event)
        assert answer.status_code < 500, (path.name, "with installation", answer.text)


# -- helpers -----------------------------------------------------------------------------


def _wait_for(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def _quietly(send: Callable[[], object]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the instance dies mid-request: the point
        send()


def _as_if_time_passed(gov: Governed, sha: str, passed: timedelta) -> None:
    """Age what the function reads the time off, as if `passed` had gone by since the crash.

    Instead of sleeping out a lease: every live claim of the repository's deliveries (its
    `lease_until`, wherever the ledger keeps it: deliveries/, the SHA's decision record, a
    run record) and the run-less dispatch intent of `sha` in repos/<id>/state.json (its
    `at`) are moved back by `passed`, through the real store and its conditional write
    (`update`), exactly where the function reads them.
    """
    store = open_store(gov.store_url)
    repo_id = gov.repo.repo_id
    keys = [k for k in store.list("deliveries/") if f"-{repo_id}-" in k]
    keys += store.list(f"decisions/{repo_id}/") + store.list(f"runs/{repo_id}/")
    aged_claims = [k for k in keys if update(store, k, _leases_aged(passed)).written]
    assert aged_claims, f"no live claim of the dead instance among {keys}"

    def age_intent(old: bytes | None) -> bytes:
        assert old is not None
        state = json.loads(old)
        intents = [d for d in state["dispatches"] if d["sha"] == sha and d["run_id"] is None]
        assert len(intents) == 1, state["dispatches"]
        intents[0]["at"] = _earlier(intents[0]["at"], passed)
        return json.dumps(state).encode()

    aged = update(store, state_key(repo_id), age_intent)
    ReleaseState.model_validate_json(aged.data)  # still a state the function can read


def _leases_aged(passed: timedelta) -> Callable[[bytes | None], bytes]:
    """A pure update: the document with each live claim in it `passed` older."""

    def age(node: Any) -> Any:
        if isinstance(node, list):
            return [age(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {name: age(value) for name, value in node.items()}
        if node.get("status") == "processing" and "lease_until" in node:
            for field in ("lease_until", "updated_at"):
                if field in node:
                    node[field] = _earlier(node[field], passed)
        return node

    def aged(old: bytes | None) -> bytes:
        assert old is not None
        before = json.loads(old)
        after = age(before)
        return old if after == before else json.dumps(after).encode()

    return aged


def _earlier(stamp: str, passed: timedelta) -> str:
    return (datetime.fromisoformat(stamp) - passed).isoformat()


def _dispatch_calls(gov: Governed) -> int:
    calls = gov.fake.calls_to("actions/create-workflow-dispatch")
    return sum(gov.repo.full_name in c.path for c in calls)


def test_an_unexpected_error_holds_the_sha_and_answers_500(gov: Governed) -> None:
    deployed_base(gov)
    sha = gov.commit("unlucky", ["src/app.py"])
    gov.fake.fail_next("repos/compare-commits-with-basehead", 404)  # GitHub lost the base

    response = gov.send(gov.verified(sha))

    assert response.status_code == 500
    assert "governor_error" in response.json()["error"]
    status = gov.our_statuses(sha)[-1]
    assert status["state"] == "failure" and "governor_error" in status["description"]
    assert gov.state().holds[sha].reason == "governor_error"
    assert gov.dispatches() == []

    retried = gov.send(gov.verified(sha))  # GitHub's redelivery, or reconcile
    assert retried.status_code == 202 and retried.json()["reason"] == "allow_low"


def test_a_long_github_rate_limit_is_a_503_with_its_retry_after(gov: Governed) -> None:
    deployed_base(gov)
    sha = gov.commit("limited", ["src/app.py"])
    gov.fake.rate_limit_next("repos/compare-commits-with-basehead", retry_after_s=120)

    response = gov.send(gov.verified(sha))

    assert response.status_code == 503
    assert response.headers["retry-after"] == "120"
    assert gov.dispatches() == []


def test_a_write_that_cannot_get_through_is_a_503_and_changes_nothing(
    fake: FakeGitHub, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import fcntl
    import os

    store_url = tmp_path_factory.mktemp("contended").as_uri()
    env = function_env(fake, store_url, GOVERNOR_WRITE_TIMEOUT_S="1")
    with serve_function("github_webhook", env) as instance:
        gov = new_repo(fake, store_url, instance.url)
        deployed_base(gov)
        sha = gov.commit("contended", ["src/app.py"])
        before = sorted(open_store(store_url).list())
        lock = os.open(Path(store_url.removeprefix("file://")) / ".governor.lock", os.O_RDWR)
        fcntl.flock(lock, fcntl.LOCK_EX)  # another governor write holds the store
        try:
            response = gov.send(gov.verified(sha))
        finally:
            os.close(lock)

    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert "another governor write is in progress" in response.json()["error"]
    assert sorted(open_store(store_url).list()) == before
    assert gov.dispatches() == []


def test_shadow_mode_reports_but_never_dispatches(gov: Governed) -> None:
    deployed_base(gov, BASE_POLICY + "mode: shadow\n")
    sha = gov.commit("shadow", ["src/app.py"], policy=BASE_POLICY + "mode: shadow\n")
    response = gov.send(gov.verified(sha))
    assert response.json()["decision"] == "ALLOW"
    assert gov.dispatches() == []
    status = gov.our_statuses(sha)[-1]
    assert status["state"] == "success" and status["description"].startswith("shadow, would ALLOW")


def test_environment_mode_dispatches_high_risk_and_reports_pending(gov: Governed) -> None:
    policy = BASE_POLICY + "approval: {mode: environment}\n"
    deployed_base(gov, policy)
    sha = gov.commit("env", ["infra/main.tf"], policy=policy)
    response = gov.send(gov.verified(sha))
    assert response.json()["reason"] == "allow_high_environment"
    assert [d["inputs"] for d in gov.dispatches()] == [{"sha": sha}]
    assert gov.our_statuses(sha)[-1]["state"] == "pending"
