"""The replay check (tests/support/replay_check.py) fails when a stored evaluation does not
reproduce, and covers the repositories of module-scoped fixtures too.

Records are written by the real flows: verification webhooks to the `github_webhook`
function served over HTTP on loopback (conftest's `local_webhook`), on the real local
store, GitHub the fake; the rollback through `governor rollback` in-process. Tampering
edits the stored record in place (tests/support/tampering.py) and puts it back before
the test ends, so the check after each test finds what the flows wrote. The fixture case
runs a module of its own (tests/support/replay_case_module.py) in a pytest of its own,
with this suite's conftest, and reads its report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from governor.cli import main

from tests.support import replay_check
from tests.support.e2e import deployed_base, function_env, new_repo
from tests.support.fake_github import FakeGitHub
from tests.support.governed import Governed
from tests.support.tampering import restore, tamper
from tests.test_cli_operate import production_b_after_a

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "tests" / "support" / "replay_case_module.py"


@pytest.fixture
def gov(fake: FakeGitHub, local_store_url: str, local_webhook: str) -> Iterator[Governed]:
    governed = new_repo(fake, local_store_url, local_webhook)
    yield governed
    assert fake.violations == []


def replay(gov: Governed) -> tuple[int, replay_check.Tally]:
    """The check on `gov` alone, counted apart from the session's tally."""
    tally = replay_check.Tally()
    return replay_check.check_repos([(gov.store_url, gov.repo.repo_id)], tally), tally


@pytest.mark.parametrize(
    ("field", "to"),
    [("outcome", "ALLOW"), ("reason", "allow_medium"), ("detail", "nothing to see")],
)
def test_a_tampered_evaluation_fails_the_check_naming_the_repository_and_sha(
    gov: Governed, field: str, to: str
) -> None:
    deployed_base(gov)
    allowed = gov.commit("low", ["src/app.py"])
    assert gov.send(gov.verified(allowed)).json()["reason"] == "allow_low"
    held = gov.commit("high", ["infra/main.tf"])
    assert gov.send(gov.verified(held)).json()["reason"] == "high_risk_no_approval"

    replayed, tally = replay(gov)  # untampered: every evaluation reproduces
    assert replayed == 2
    assert tally.by_reason == {"allow_low": 1, "high_risk_no_approval": 1}
    assert (tally.records, tally.replayed) == (2, 2)

    original = tamper(gov.store_url, gov.repo.repo_id, held, {field: to})
    try:
        with pytest.raises(AssertionError) as failed:
            replay(gov)
    finally:
        restore(gov.store_url, gov.repo.repo_id, held, original)

    message = str(failed.value)
    assert f"{gov.repo.full_name} {held} " in message
    assert f"mismatch: {field}: stored {to!r}, replayed " in message
    assert f"governor --store {gov.store_url} simulate {gov.repo.full_name} {held}" in message
    assert allowed not in message, "only the tampered evaluation is named"
    assert replay(gov)[0] == 2, "restored, it reproduces again"


def test_a_tampered_rollback_fails_the_check_though_it_cannot_be_decided_again(
    gov: Governed, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollback is not replayed (its inputs are not kept), but what it must be is checked."""
    for name, value in function_env(gov.fake, gov.store_url).items():
        monkeypatch.setenv(name, value)
    a, _b = production_b_after_a(gov)
    code = main(["--json", "rollback", gov.repo.full_name, "--reason", "b breaks", "--by", "kim"])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["target"] == a, err
    replayed, tally = replay(gov)
    assert tally.not_the_gates == 1 and replayed == tally.replayed

    tampered: list[tuple[dict[str, Any], str]] = [
        ({"outcome": "HOLD"}, "not ALLOW though it records a dispatch"),
        ({"reason": "allow_low"}, "a rollback recorded as allow_low"),
        ({"detail": f"rollback to {a[:7]} by mallory: b breaks"}, "whose detail"),
        ({"inputs": {"by": "kim", "why": "b breaks", "forced": True}}, "forced False by its"),
    ]
    for changes, says in tampered:
        original = tamper(gov.store_url, gov.repo.repo_id, a, changes)
        try:
            with pytest.raises(AssertionError) as failed:
                replay(gov)
        finally:
            restore(gov.store_url, gov.repo.repo_id, a, original)
        assert f"{gov.repo.full_name} {a} rollback " in str(failed.value)
        assert says in str(failed.value), (changes, str(failed.value))
    replay(gov)


def run_case(
    tmp_path: Path, *, tampered: bool
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """tests/support/replay_case_module.py in a pytest of its own: the process and what
    the module wrote (its repository, then its SHAs)."""
    tmp_path.mkdir()
    out = tmp_path / "case.txt"
    env = {**os.environ, "REPLAY_CASE_OUT": str(out), "REPLAY_CASE_TAMPER": str(int(tampered))}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path / 'inner'}",
            str(CASE),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert out.exists(), done.stdout + done.stderr
    return done, out.read_text().split()


@pytest.mark.slow
def test_a_module_fixture_s_repository_is_replayed_after_the_module_and_a_tampered_one_fails(
    tmp_path: Path,
) -> None:
    clean, _ = run_case(tmp_path / "clean", tampered=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "2 passed in" in clean.stdout and "error" not in clean.stdout.lower(), clean.stdout
    assert "replayed 2 stored evaluations exactly" in clean.stdout, clean.stdout
    assert "of 0 tests and 1 module or session fixtures" in clean.stdout, clean.stdout

    done, (repo, held, later) = run_case(tmp_path / "tampered", tampered=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 passed, 1 error in" in done.stdout, done.stdout
    errors = done.stdout.split("ERROR at teardown of test_a_later_test_adds_an_evaluation_to_it")
    assert len(errors) == 2, done.stdout
    report = errors[1].split("short test summary info")[0]
    assert "made by the fixture module-scoped module_repo" in report, report
    assert f"{repo} {later} " in report and "reason: stored 'allow_medium'" in report, report
    assert held not in report, "the untampered evaluation reproduced"
