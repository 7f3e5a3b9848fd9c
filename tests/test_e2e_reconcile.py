"""Reconcile end to end: the `reconcile` and `github_webhook` functions on
functions-framework over HTTP, the local store, and the fake GitHub delivering webhooks
the way GitHub's Hookshot does (and failing to, when told).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.e2e import SECRET, deployed_base, function_env, new_repo
from tests.support.fake_github import FakeGitHub
from tests.support.functions_server import serve_function
from tests.support.governed import VERIFY_FILE, Governed


@dataclass
class Served:
    webhook: str
    reconcile: str
    store_url: str


@pytest.fixture(scope="module")
def served(fake: FakeGitHub, local_store_url: str) -> Iterator[Served]:
    env = function_env(fake, local_store_url)
    with (
        serve_function("github_webhook", env) as webhook,
        serve_function("reconcile", env) as reconcile,
    ):
        fake.webhook_url, fake.webhook_secret = webhook.url + "/", SECRET
        yield Served(webhook.url + "/", reconcile.url + "/", local_store_url)


def governed(fake: FakeGitHub, served: Served) -> Governed:
    gov = new_repo(fake, served.store_url, served.webhook)
    deployed_base(gov)
    return gov


def reconcile(served: Served) -> dict[str, Any]:
    response = httpx.post(served.reconcile, timeout=120)
    assert response.status_code == 200, response.text
    summary: dict[str, Any] = response.json()
    assert summary["errors"] == [], summary
    return summary


def dispatched(gov: Governed) -> list[str]:
    return [d["inputs"]["sha"] for d in gov.dispatches()]


def test_webhooks_dropped_entirely_one_reconcile_dispatches(
    fake: FakeGitHub, served: Served
) -> None:
    gov = governed(fake, served)
    sha = gov.commit("never-announced", ["src/app.py"])
    gov.repo.add_completed_run(VERIFY_FILE, head_sha=sha)  # GitHub sent nothing at all

    summary = reconcile(served)

    assert summary["actions"]["verification_caught_up"] >= 1, summary
    assert dispatched(gov) == [sha]
    assert gov.our_statuses(sha)[-1]["state"] == "success"
    reconcile(served)
    assert dispatched(gov) == [sha]


def test_a_failed_delivery_is_redelivered_through_githubs_deliveries_api(
    fake: FakeGitHub, served: Served
) -> None:
    gov = governed(fake, served)
    sha = gov.commit("undelivered", ["src/app.py"])
    # GitHub could not reach the webhook, two minutes ago (on GitHub's clock).
    real_clock = fake.clock
    fake.clock = lambda: real_clock() - 120
    try:
        failed = fake.deliver("workflow_run", gov.verified(sha), drop=True)
    finally:
        fake.clock = real_clock
    assert not failed.ok

    summary = reconcile(served)
    fake.wait_for_redeliveries()

    assert summary["actions"]["redelivered"] >= 1, summary
    attempts = fake.deliveries(failed.guid)
    assert [a["redelivery"] for a in attempts] == [True, False], attempts
    assert attempts[0]["status_code"] == 202, attempts[0]  # the function acted on it
    assert dispatched(gov) == [sha]
    reconcile(served)  # it succeeded: not redelivered again
    fake.wait_for_redeliveries()
    assert len(fake.deliveries(failed.guid)) == 2


def test_two_reconciles_and_the_webhook_at_once_give_one_dispatch(
    fake: FakeGitHub, served: Served
) -> None:
    """Each SHA is announced three ways at the same moment: its webhook, and two reconcile
    runs that find its successful verification run. Five repositories, all at once."""
    repos = [governed(fake, served) for _ in range(5)]
    shas = []
    for gov in repos:
        sha = gov.commit("raced", ["src/app.py"])
        gov.repo.add_completed_run(VERIFY_FILE, head_sha=sha)
        shas.append(sha)
    start = threading.Barrier(len(repos) + 2)
    answers: list[int] = []

    def webhook(gov: Governed, sha: str) -> None:
        start.wait()
        answers.append(fake.deliver("workflow_run", gov.verified(sha)).status_code)

    def reconcile_run() -> None:
        start.wait()
        answers.append(httpx.post(served.reconcile, timeout=120).status_code)

    threads = [
        threading.Thread(target=webhook, args=(gov, sha))
        for gov, sha in zip(repos, shas, strict=True)
    ] + [threading.Thread(target=reconcile_run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)

    assert len(answers) == len(threads) and all(s < 300 for s in answers), answers
    for gov, sha in zip(repos, shas, strict=True):
        assert dispatched(gov) == [sha], gov.repo.full_name
        assert gov.our_statuses(sha)[-1]["state"] == "success"
        assert gov.state().dispatch_for(sha) is not None


def test_reconcile_answers_only_post_and_get(served: Served) -> None:
    response = httpx.put(served.reconcile, timeout=30)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST, GET"
    assert httpx.get(served.reconcile, timeout=120).status_code == 200
