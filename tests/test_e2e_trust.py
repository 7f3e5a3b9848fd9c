"""The trust rules end to end: each attack of someone with write access, over HTTP.

Every scenario runs against the webhook function served by functions-framework, the
fake GitHub (which checks every request against GitHub's description) and
fake-gcs-server. Each would have got round the gate before the trust rules: the
comment above each test says what the attack was and what the governor answers now.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from governor.events import signature_for
from governor.ledger import Ledger
from governor.state import record_intent, record_run
from governor.store import open_store

from tests.support.e2e import deployed_base, function_env
from tests.support.fake_github import FakeGitHub, validate_webhook
from tests.support.functions_server import serve_function
from tests.support.governed import BASE_POLICY, DEPLOY_FILE, Governed, sha_for

RELAXED_APPROVAL = BASE_POLICY + "approval: {min_permission: write, allow_author: true}\n"


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def branch_commit(gov: Governed, label: str, files: list[str], *, branch: str, policy: str) -> str:
    """A commit on `branch` (forked from main's tip), with `policy` at that SHA."""
    sha = sha_for(f"{gov.repo.full_name}:{label}")
    gov.repo.add_commit(
        sha,
        files=[{"filename": f, "status": "modified"} for f in files],
        parent=gov.repo.tip(),
        branch=branch,
    )
    gov.repo.set_file(".github/release-governor.yml", policy, ref=sha)
    return sha


def protect(gov: Governed, run_id: int) -> httpx.Response:
    """Send the protection request GitHub sends for the run's current attempt; every
    request must be answered at its callback, exactly once."""
    payload = gov.repo.protection_request_payload(run_id)
    assert validate_webhook("deployment_protection_rule", payload) == []
    response = gov.send(payload, "deployment_protection_rule")
    assert response.status_code == 202, response.text
    assert gov.repo.gate_review(run_id) is not None, "the request was left unanswered"
    return response


def governor_runs(gov: Governed) -> list[dict[str, Any]]:
    """Runs of the deploy workflow that the App itself started, oldest first."""
    return [
        run
        for run in gov.repo.dispatched_runs(DEPLOY_FILE)
        if run["triggering_actor"]["login"] == gov.fake.bot_login
    ]


def deploy_run_of(gov: Governed, sha: str) -> int:
    return int(next(run["id"] for run in governor_runs(gov) if run["inputs"] == {"sha": sha}))


# -- the policy that governs ------------------------------------------------------------


def test_a_branch_cannot_name_itself_the_default_branch(gov: Governed) -> None:
    # Attack: a branch's own policy said `default_branch: <it>`, `deploy_ref: main` and
    # environment approval; its HIGH change was ALLOWed and dispatched on main.
    deployed_base(gov)
    evil = (
        "deploy_workflow: deploy.yml\nverification_workflow: verify-main.yml\n"
        "default_branch: sneaky\ndeploy_ref: main\napproval: {mode: environment}\n"
    )
    sha = branch_commit(
        gov,
        "sneaky",
        [".github/release-governor.yml", "infra/prod.tf"],
        branch="sneaky",
        policy=evil,
    )

    response = gov.send(gov.verified(sha, head_branch="sneaky"))

    assert response.status_code == 200 and response.json()["result"] == "ignored"
    assert "not the default branch main" in response.json()["why"]
    assert gov.dispatches() == [] and gov.our_statuses(sha) == []


def test_a_sha_off_the_default_branch_is_ignored_even_when_its_run_says_main(
    gov: Governed,
) -> None:
    # Attack: a tag named `main` on a commit off the default branch; its run reports
    # head_branch "main" and the SHA was ALLOWed as LOW and dispatched.
    deployed_base(gov)
    sha = branch_commit(gov, "tagged", ["src/app.py"], branch="topic", policy=BASE_POLICY)
    gov.repo.set_tag("main", sha)

    response = gov.send(gov.verified(sha, head_branch="main"))

    assert response.status_code == 200 and response.json()["result"] == "ignored"
    assert f"{sha} is not on refs/heads/main" in response.json()["why"]
    assert gov.dispatches() == [] and gov.our_statuses(sha) == []
    compares = [unquote(c.path) for c in gov.fake.calls_to("repos/compare-commits-with-basehead")]
    assert any(path.endswith(f"/compare/refs/heads/main...{sha}") for path in compares), compares


def test_a_commit_relaxing_approval_is_approved_under_the_production_rules(
    gov: Governed,
) -> None:
    # Attack: a commit relaxed `approval` (write may approve, the author may approve); it
    # was held as HIGH, then its author, with write access, labelled the PR: dispatched.
    deployed_base(gov)
    sha = gov.commit(
        "relax", [".github/release-governor.yml", "src/app.py"], policy=RELAXED_APPROVAL
    )
    held = gov.send(gov.verified(sha))
    assert held.json()["reason"] == "high_risk_no_approval"

    gov.repo.add_pull(31, user="writer", head_sha="e" * 40, merge_commit_sha=sha)
    gov.repo.set_permission("writer", "write")
    by_author = gov.send(
        gov.repo.label_added_payload(31, "deploy-approved", "writer"), "pull_request"
    )

    assert by_author.status_code == 200 and by_author.json()["result"] == "ignored"
    assert "may not approve" in by_author.json()["why"]
    gov.repo.set_permission("other-writer", "write")
    by_writer = gov.send(
        gov.repo.label_added_payload(31, "deploy-approved", "other-writer"), "pull_request"
    )
    assert "needs maintain" in by_writer.json()["why"]
    assert gov.dispatches() == []

    gov.repo.set_permission("maint", "maintain")
    approved = gov.send(
        gov.repo.label_added_payload(31, "deploy-approved", "maint"), "pull_request"
    )
    assert approved.json()["result"] == "approved"
    assert [d["inputs"] for d in gov.dispatches()] == [{"sha": sha}]


def test_a_freeze_added_in_the_sha_itself_applies_at_once(gov: Governed) -> None:
    deployed_base(gov)
    frozen = BASE_POLICY + (
        "freeze:\n  ranges:\n    - {start: '2020-01-01T00:00:00+00:00', "
        "end: '2100-01-01T00:00:00+00:00', reason: change freeze}\n"
    )
    sha = gov.commit("freeze", ["src/app.py"], policy=frozen)
    response = gov.send(gov.verified(sha))
    assert response.json()["reason"] == "freeze_window"
    assert "own policy" in gov.our_statuses(sha)[-1]["description"]
    assert gov.dispatches() == []


# -- deploy outcomes only from the governor's own run -----------------------------------


def test_another_workflow_titled_with_a_dispatched_sha_is_not_its_deploy(gov: Governed) -> None:
    # Attack: any workflow_dispatch workflow whose run title held a dispatched SHA was
    # taken as its deploy: a failure opened issues and started the cooldown.
    deployed_base(gov)
    sha = gov.commit("victim", ["src/app.py"])
    gov.send(gov.verified(sha))
    assert len(gov.dispatches()) == 1
    gov.repo.add_workflow("other.yml", name="Other", workflow_id=gov.repo.repo_id * 10 + 3)
    other = gov.repo.start_manual_run("other.yml", actor="writer", ref="main", inputs={"sha": sha})
    gov.repo.complete_run(other, "failure")

    response = gov.send(gov.repo.complete_run(other, "failure"))

    assert response.status_code == 200 and response.json()["result"] == "ignored"
    assert gov.repo.issues() == []
    assert sha not in gov.state().failures


def test_a_hand_started_deploy_run_cannot_move_production(gov: Governed) -> None:
    # Attack: once a SHA was dispatched, a "success" of any run titled with it moved
    # production, before (or without) the governor's own deploy.
    base = deployed_base(gov)
    sha = gov.commit("dispatched", ["src/app.py"])
    assert gov.send(gov.verified(sha)).json()["decision"] == "ALLOW"
    by_hand = gov.repo.start_manual_run(
        DEPLOY_FILE, actor="writer", ref="main", inputs={"sha": sha}
    )

    response = gov.send(gov.repo.complete_run(by_hand, "success"))

    assert response.json()["result"] == "ignored"
    assert gov.state().production_sha == base


def test_before_the_run_id_is_known_only_the_apps_own_run_counts(gov: Governed) -> None:
    # A run-less intent (the dispatch answer was lost), recorded before dispatches named
    # their workflow: a person's run titled with the SHA, on the deploy workflow and
    # branch, created after the intent, is still not it (only the App's bot's would be).
    base = deployed_base(gov)
    sha = gov.commit("runless", ["src/app.py"])
    ledger = Ledger(open_store(gov.store_url))
    now = datetime.now(UTC) - timedelta(seconds=5)
    ledger.transition(
        gov.repo.repo_id,
        gov.repo.full_name,
        lambda s: record_intent(s, sha, "lost-answer", now),  # as schema 1 recorded it
    )
    by_hand = gov.repo.start_manual_run(
        DEPLOY_FILE, actor="writer", ref="main", inputs={"sha": sha}
    )
    ignored = gov.send(gov.repo.complete_run(by_hand, "success"))
    assert ignored.json()["result"] == "ignored"
    assert gov.state().production_sha == base


# -- decisions on fresh state -----------------------------------------------------------


def test_two_shas_verified_at_once_never_exceed_the_hourly_limit(gov: Governed) -> None:
    # Attack: under max_deploys_per_hour: 2 with one deploy in the hour, two SHAs verified
    # at the same moment were both dispatched.
    policy = BASE_POLICY + "max_deploys_per_hour: 2\n"
    base = deployed_base(gov, policy)
    earlier = datetime.now(UTC) - timedelta(minutes=10)
    ledger = Ledger(open_store(gov.store_url))
    ledger.transition(
        gov.repo.repo_id,
        gov.repo.full_name,
        lambda s: record_run(
            record_intent(s, base, "earlier", earlier),
            base,
            intent_id="earlier",
            run_id=1,
            run_url=None,
            now=earlier,
        ),
    )
    first = gov.commit("first", ["src/a.py"], policy=policy)
    second = gov.commit("second", ["src/b.py"], policy=policy)
    # Both evaluations read the state, then wait on GitHub: both decide on the same state.
    gov.fake.slow_next("repos/compare-commits-with-basehead", 1.0, times=4)

    answers: dict[str, httpx.Response] = {}
    threads = [
        threading.Thread(target=lambda s=s: answers.__setitem__(s, gov.send(gov.verified(s))))
        for s in (first, second)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(gov.dispatches()) == 1, [a.json() for a in answers.values()]
    assert sorted(a.json()["decision"] for a in answers.values()) == ["ALLOW", "HOLD"]
    held = next(a.json() for a in answers.values() if a.json()["decision"] == "HOLD")
    assert held["reason"] in ("rate_limit", "superseded")
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    assert len(gov.state().dispatches_since(hour_ago)) <= 2


def test_an_older_sha_is_never_dispatched_after_a_newer_one(gov: Governed) -> None:
    # Attack: the older SHA read the state, the newer one was dispatched meanwhile, then
    # the older one was dispatched too: a rollback nobody asked for.
    deployed_base(gov)
    older = gov.commit("older", ["src/a.py"])
    newer = gov.commit("newer", ["src/b.py"])
    gov.fake.slow_next("repos/compare-commits-with-basehead", 1.5)  # the older one's first
    compares_before = len(gov.fake.calls_to("repos/compare-commits-with-basehead"))

    late: dict[str, httpx.Response] = {}
    thread = threading.Thread(
        target=lambda: late.__setitem__("older", gov.send(gov.verified(older)))
    )
    thread.start()
    wait_until(
        lambda: len(gov.fake.calls_to("repos/compare-commits-with-basehead")) > compares_before,
        "the older SHA's evaluation to be waiting on GitHub",
    )
    assert gov.send(gov.verified(newer)).json()["decision"] == "ALLOW"
    thread.join()

    assert late["older"].json()["reason"] == "superseded"
    assert [d["inputs"]["sha"] for d in gov.dispatches()] == [newer]
    assert [d.sha for d in gov.state().dispatches] == [newer]


# -- secrets and signatures ---------------------------------------------------------------


def test_an_empty_or_short_secret_is_refused_and_nothing_is_processed(
    fake: FakeGitHub, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Attack: GOVERNOR_WEBHOOK_SECRET="" was accepted and bodies signed with "" passed.
    store_url = tmp_path_factory.mktemp("short-secret").as_uri()
    for secret in ("", "fifteen-chars!!"):
        env = function_env(fake, store_url, GOVERNOR_WEBHOOK_SECRET=secret)
        with serve_function("github_webhook", env) as server:
            body = b'{"zen": "x"}'
            response = httpx.post(
                server.url,
                content=body,
                headers={
                    "x-github-event": "ping",
                    "x-github-delivery": str(uuid.uuid4()),
                    "x-hub-signature-256": signature_for(secret.encode(), body),
                },
                timeout=30,
            )
        assert response.status_code == 503, response.text
        assert "GOVERNOR_WEBHOOK_SECRET" in server.log
    assert open_store(store_url).list() == []


def test_a_non_ascii_signature_header_is_401_not_500(gov: Governed) -> None:
    body = b'{"zen": "x"}'
    response = httpx.post(
        gov.webhook_url,
        content=body,
        headers=[
            (b"x-github-event", b"ping"),
            (b"x-github-delivery", str(uuid.uuid4()).encode()),
            (b"x-hub-signature-256", "sha256=ü".encode()),
        ],
        timeout=30,
    )
    assert response.status_code == 401


def test_a_body_replayed_under_a_new_guid_changes_nothing(gov: Governed) -> None:
    deployed_base(gov)
    sha = gov.commit("replayed", ["src/app.py"])
    payload = gov.verified(sha)
    assert gov.send(payload).json()["decision"] == "ALLOW"
    store = open_store(gov.store_url)
    before = {key: store.get(key) for key in store.list()}

    replay = gov.send(payload, guid=str(uuid.uuid4()))

    assert replay.status_code == 200 and replay.json()["result"] == "duplicate"
    assert {key: store.get(key) for key in store.list()} == before  # not one write
    assert len(gov.dispatches()) == 1


# -- the first deploy --------------------------------------------------------------------


def test_a_low_first_deploy_goes_out_unless_the_policy_asks_for_approval(gov: Governed) -> None:
    # With `require_approval_for_first_deploy: false` (the default) a first deploy was
    # still held as HIGH "nothing to compare with", so the setting did nothing.
    sha = gov.commit("first", ["src/app.py"])
    response = gov.send(gov.verified(sha))
    assert response.json()["reason"] == "allow_low", response.json()
    assert [d["inputs"] for d in gov.dispatches()] == [{"sha": sha}]


def test_a_first_deploy_needs_approval_when_the_policy_says_so(gov: Governed) -> None:
    sha = gov.commit(
        "first-strict",
        ["src/app.py"],
        policy=BASE_POLICY + "require_approval_for_first_deploy: true\n",
    )
    response = gov.send(gov.verified(sha))
    assert response.json()["reason"] == "first_deploy_required"
    assert gov.dispatches() == []


def test_a_sha_that_diverged_from_production_is_high(gov: Governed) -> None:
    root = gov.commit("root", ["README.md"])
    gone = branch_commit(gov, "gone", ["src/old.py"], branch="old-release", policy=BASE_POLICY)
    gov.repo.set_file(".github/release-governor.yml", BASE_POLICY, ref=root)
    gov.in_production(gone)
    sha = gov.commit("diverged", ["src/app.py"])

    response = gov.send(gov.verified(sha))

    assert response.json()["reason"] == "high_risk_no_approval"
    record = Ledger(open_store(gov.store_url)).read_decision(gov.repo.repo_id, sha)
    assert record is not None and record.latest is not None
    assert any("remove what production has" in note for note in record.latest.inputs["notes"])


# -- the deployment protection rule -------------------------------------------------------


def test_the_governors_own_run_is_approved(gov: Governed) -> None:
    deployed_base(gov)
    sha = gov.commit("own", ["src/app.py"])
    gov.send(gov.verified(sha))
    run_id = deploy_run_of(gov, sha)

    response = protect(gov, run_id)

    assert response.json()["result"] == "approved", response.json()
    review = gov.repo.gate_review(run_id)
    assert review is not None and review["state"] == "approved"
    assert review["environment_name"] == "production"


def test_a_request_before_the_run_id_is_recorded_is_answered_once_it_is_proven(
    gov: Governed,
) -> None:
    deployed_base(gov)
    sha = gov.commit("early", ["src/app.py"])
    gov.fake.slow_next(
        "actions/create-workflow-dispatch", 1.5
    )  # the run exists, the answer is late
    verdict: dict[str, httpx.Response] = {}
    thread = threading.Thread(target=lambda: verdict.__setitem__("v", gov.send(gov.verified(sha))))
    thread.start()
    wait_until(lambda: bool(governor_runs(gov)), "the dispatched run to exist")
    run_id = deploy_run_of(gov, sha)
    assert gov.state().dispatch_for(sha).run_id is None  # type: ignore[union-attr]

    response = protect(gov, run_id)
    thread.join()

    assert response.json()["result"] == "approved", response.json()
    assert gov.repo.gate_review(run_id)["state"] == "approved"  # type: ignore[index]
    assert gov.state().dispatch_for(sha).run_id == run_id  # type: ignore[union-attr]
    assert verdict["v"].json()["decision"] == "ALLOW"


def test_a_hand_started_deploy_of_a_held_sha_is_rejected_with_the_reason(gov: Governed) -> None:
    deployed_base(gov)
    sha = gov.commit("held", ["infra/main.tf"])
    assert gov.send(gov.verified(sha)).json()["reason"] == "high_risk_no_approval"
    by_hand = gov.repo.start_manual_run(
        DEPLOY_FILE, actor="writer", ref="main", inputs={"sha": sha}
    )

    response = protect(gov, by_hand)

    assert response.json()["result"] == "rejected"
    review = gov.repo.gate_review(by_hand)
    assert review is not None and review["state"] == "rejected"
    assert review["comment"].startswith("not_governor_run: ")
    assert "re-run the governor's own deploy run" in review["comment"]

    gov.send(gov.repo.complete_run(by_hand, "failure"))  # rejected: no cooldown, no issue
    assert gov.repo.issues() == [] and sha not in gov.state().failures


def test_an_old_run_of_the_governor_is_rejected_once_a_newer_sha_is_dispatched(
    gov: Governed,
) -> None:
    deployed_base(gov)
    older = gov.commit("old-run", ["src/a.py"])
    gov.send(gov.verified(older))
    old_run = deploy_run_of(gov, older)
    newer = gov.commit("new-run", ["src/b.py"])
    gov.send(gov.verified(newer))

    response = protect(gov, old_run)

    assert response.json()["result"] == "rejected" and response.json()["reason"] == "superseded"
    failed = gov.send(gov.repo.complete_run(old_run, "failure"))
    assert failed.json()["result"] == "ignored"  # the governor stopped it: not a failure
    assert gov.repo.issues() == [] and older not in gov.state().failures
    assert protect(gov, deploy_run_of(gov, newer)).json()["result"] == "approved"


def test_a_rerun_is_approved_only_if_its_sha_passes_the_gate_now(gov: Governed) -> None:
    deployed_base(gov)
    sha = gov.commit("rerun", ["src/app.py"])
    gov.send(gov.verified(sha))
    run_id = deploy_run_of(gov, sha)
    assert protect(gov, run_id).json()["result"] == "approved"
    failed = gov.send(gov.repo.complete_run(run_id, "failure"))
    assert failed.json()["result"] == "deploy_failed"

    gov.repo.rerun(run_id, actor="writer")
    response = protect(gov, run_id)

    assert response.json()["result"] == "rejected" and response.json()["reason"] == "cooldown"
    assert gov.repo.gate_review(run_id, 2)["state"] == "rejected"  # type: ignore[index]
    again = gov.send(gov.repo.complete_run(run_id, "failure"))
    assert again.json()["result"] == "ignored"
    assert gov.state().failures[sha].count == 1 and len(gov.repo.issues()) == 1


# -- failing closed, and failing early ----------------------------------------------------


def test_the_fail_closed_hold_never_lands_over_a_live_dispatch(gov: Governed) -> None:
    # A 502 on the status after a successful dispatch used to post `governor_error`
    # over the live dispatch: statuses read success, then failure.
    deployed_base(gov)
    sha = gov.commit("status-lost", ["src/app.py"])
    gov.fake.fail_next("repos/create-commit-status", 502)

    response = gov.send(gov.verified(sha))

    assert response.status_code == 500
    assert [d["inputs"] for d in gov.dispatches()] == [{"sha": sha}]
    assert gov.our_statuses(sha) == []  # no failing status over the dispatch
    state = gov.state()
    assert state.dispatch_for(sha) is not None and sha not in state.holds


def test_a_malformed_guid_is_a_400_that_stores_and_holds_nothing(gov: Governed) -> None:
    deployed_base(gov)
    sha = gov.commit("bad-guid", ["src/app.py"])
    store = open_store(gov.store_url)
    before = sorted(store.list())

    response = gov.send(gov.verified(sha), guid="../../deliveries/x")

    assert response.status_code == 400
    assert sorted(store.list()) == before
    assert gov.our_statuses(sha) == [] and gov.dispatches() == []
