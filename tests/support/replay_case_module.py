"""A test module run by tests/test_replay_check.py in a pytest of its own (the suite never
collects it: its name is not test_*.py), with the suite's conftest.

Its governed repository is made by a module-scoped fixture, before any test, and the
second test adds an evaluation to it. With REPLAY_CASE_TAMPER=1 that evaluation's stored
reason is then edited: the replay of the module's repository, when the fixture is torn
down after both tests, must fail, naming the repository and the SHA. REPLAY_CASE_OUT
names a file where the repository and the SHAs are written, one per line.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.e2e import deployed_base, new_repo
from tests.support.fake_github import FakeGitHub
from tests.support.governed import Governed
from tests.support.tampering import tamper

TAMPER = os.environ.get("REPLAY_CASE_TAMPER") == "1"
OUT = Path(os.environ["REPLAY_CASE_OUT"])


@pytest.fixture(scope="module")
def module_repo(fake: FakeGitHub, local_store_url: str, local_webhook: str) -> Governed:
    gov = new_repo(fake, local_store_url, local_webhook)
    deployed_base(gov)
    held = gov.commit("held", ["infra/main.tf"])
    answer = gov.send(gov.verified(held))
    assert answer.json()["reason"] == "high_risk_no_approval", answer.text
    OUT.write_text(f"{gov.repo.full_name}\n{held}\n")
    return gov


def test_the_module_s_repository_holds_a_high_sha(module_repo: Governed) -> None:
    assert module_repo.state().holds


def test_a_later_test_adds_an_evaluation_to_it(module_repo: Governed) -> None:
    later = module_repo.commit("later", ["infra/other.tf"])
    answer = module_repo.send(module_repo.verified(later))
    assert answer.json()["reason"] == "high_risk_no_approval", answer.text
    with OUT.open("a") as out:
        out.write(f"{later}\n")
    if TAMPER:
        tamper(module_repo.store_url, module_repo.repo.repo_id, later, {"reason": "allow_medium"})
