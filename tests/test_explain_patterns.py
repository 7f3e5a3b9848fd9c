"""`governor explain` names the pattern behind each risky path from the policy text the
decision record keeps: records written by the real verification flow in-process against
the fake GitHub, on the real local store; the command called as `governor.cli.main`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pathspec
import pytest
from governor.cli import main
from governor.events import Delivery
from governor.flows import delivery as deliveries
from governor.flows.context import Context
from governor.flows.results import to_json
from governor.github.api import GitHubApp
from governor.ledger import decision_key
from governor.page.patterns import pattern_for
from governor.policy import Policy, parse_policy
from governor.risk import ChangedFile, assess
from governor.store import ABSENT, open_store

from tests.support.e2e import deployed_base, new_repo
from tests.support.fake_github import FakeGitHub
from tests.support.governed import BASE_POLICY, Governed
from tests.support.world import in_process

PATTERN_POLICY = (
    BASE_POLICY
    + "high_risk_paths: ['services/payments/**', '!services/payments/docs/**', '*.sql']\n"
    + "medium_risk_paths: ['config/*.yaml', 'services/**']\n"
)
"""The trusted policy: its own patterns instead of the defaults."""
EXPECTED = {
    "services/payments/api.py": ("HIGH", "services/payments/**"),
    "services/payments/schema.sql": ("HIGH", "*.sql"),  # the last matching one decides
    "services/payments/docs/guide.md": ("MEDIUM", "services/**"),  # negated in HIGH
    "config/app.yaml": ("MEDIUM", "config/*.yaml"),
}
LOW_HERE = ("infra/main.tf", "README.md")
"""infra/main.tf is HIGH under the default patterns (the SHA's own policy), not here."""


@dataclass
class World:
    fake: FakeGitHub
    ctx: Context
    url: str

    def repo(self, policy: str = BASE_POLICY) -> Governed:
        gov = new_repo(self.fake, self.url, "http://unused.invalid")
        deployed_base(gov, policy)
        return gov

    def verify(self, gov: Governed, sha: str) -> dict[str, Any]:
        delivery = Delivery(str(uuid.uuid4()), "workflow_run", gov.verified(sha))
        return to_json(deliveries.handle(self.ctx, delivery))


@pytest.fixture
def world(fake: FakeGitHub, fake_app: GitHubApp, tmp_path: Path) -> Iterator[World]:
    url = (tmp_path / "store").as_uri()
    now = [datetime.now(UTC).replace(microsecond=0)]
    yield World(fake, in_process(fake, url, now, app=fake_app), url)
    assert fake.violations == []


def explain(
    url: str, *args: str, capsys: pytest.CaptureFixture[str], as_json: bool = False
) -> tuple[int, Any]:
    code = main(["--store", url, *(["--json"] if as_json else []), "explain", *args])
    out, err = capsys.readouterr()
    assert out, err
    return code, json.loads(out) if as_json else out


def held_under_patterns(world: World) -> tuple[Governed, str]:
    gov = world.repo(PATTERN_POLICY)
    sha = gov.commit("patterns", [*EXPECTED, *LOW_HERE])  # its own policy: the defaults
    assert world.verify(gov, sha)["reason"] == "high_risk_no_approval"
    return gov, sha


def test_explain_names_the_trusted_policys_pattern_for_each_path_from_the_record(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    gov, sha = held_under_patterns(world)
    production = gov.state().production_sha

    code, explained = explain(world.url, gov.repo.full_name, sha, capsys=capsys, as_json=True)

    assert code == 0 and explained["decided_by"] == "trusted"
    found = {p["path"]: (p["risk"], p["pattern"]) for p in explained["paths"]}
    assert found == EXPECTED
    assert explained["patterns_policy"] == "trusted"
    assert explained["patterns_from"] == (
        f"the trusted policy read at production {production}, as the decision record keeps it"
    )

    code, text = explain(world.url, gov.repo.full_name, sha, capsys=capsys)

    lines = text.splitlines()
    assert code == 0
    for path, (risk, pattern) in EXPECTED.items():
        assert f"  {risk:<6}  {path}  matched {pattern}" in lines, text
    assert "infra/main.tf" not in text.split("evaluations (")[0]
    assert "(pattern not recorded)" not in text
    assert f"  (patterns from the trusted policy read at production {production}" in text


def test_explain_names_the_shas_own_pattern_when_its_own_policy_decided(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """The trusted policy (the defaults) finds src/app.py LOW; the SHA's own policy makes
    it HIGH and holds it: the paths and the pattern are the own policy's."""
    gov = world.repo()
    own = BASE_POLICY + "high_risk_paths: ['src/**']\n"
    sha = gov.commit("own", ["src/app.py"], policy=own)
    assert world.verify(gov, sha)["reason"] == "high_risk_no_approval"

    _, explained = explain(world.url, gov.repo.full_name, sha, capsys=capsys, as_json=True)

    assert explained["decided_by"] == "own"
    assert explained["paths"] == [{"path": "src/app.py", "risk": "HIGH", "pattern": "src/**"}]
    assert explained["patterns_policy"] == "own"
    assert explained["patterns_from"] == "this SHA's own policy, as the decision record keeps it"


def test_a_policy_file_takes_precedence_over_the_stored_text(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    gov, sha = held_under_patterns(world)
    other = tmp_path / "other.yml"
    other.write_text(BASE_POLICY + "high_risk_paths: ['services/**']\nmedium_risk_paths: []\n")

    args = (gov.repo.full_name, sha, "--policy", str(other))
    _, explained = explain(world.url, *args, capsys=capsys, as_json=True)

    found = {p["path"]: p["pattern"] for p in explained["paths"]}
    assert found == {
        "services/payments/api.py": "services/**",
        "services/payments/schema.sql": "services/**",
        "services/payments/docs/guide.md": None,  # HIGH under that file, not MEDIUM
        "config/app.yaml": None,
    }
    assert explained["patterns_policy"] == "file"
    assert explained["patterns_from"] == str(other)
    _, text = explain(world.url, *args, capsys=capsys)
    assert "  MEDIUM  config/app.yaml  (no pattern of that policy classes it so)" in text
    assert f"  (patterns from {other})" in text


def test_a_record_without_policy_texts_says_the_pattern_is_not_recorded(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """As a record written before evaluations kept their replay data reads."""
    gov, sha = held_under_patterns(world)
    source = open_store(world.url)
    older = (tmp_path / "older").as_uri()
    copy = open_store(older)
    for key in source.list():
        stored = source.get(key)
        assert stored is not None
        data = stored.data
        if key == decision_key(gov.repo.repo_id, sha):
            raw = json.loads(data)
            del raw["policies"], raw["changes"]
            for evaluation in raw["evaluations"]:
                del evaluation["replay"]
            data = json.dumps(raw).encode()
        copy.put(key, data, if_generation_match=ABSENT)

    code, explained = explain(older, gov.repo.full_name, sha, capsys=capsys, as_json=True)

    assert code == 0
    assert {p["path"]: (p["risk"], p["pattern"]) for p in explained["paths"]} == {
        path: (risk, None) for path, (risk, _) in EXPECTED.items()
    }
    assert explained["patterns_from"] is None and explained["patterns_policy"] is None
    _, text = explain(older, gov.repo.full_name, sha, capsys=capsys)
    assert "  HIGH    services/payments/api.py  (pattern not recorded)" in text.splitlines()
    assert "patterns from" not in text


def test_the_pattern_named_is_one_that_classes_the_path_as_assess_does() -> None:
    """For every path `risk.assess` lists, the pattern named classes it on its own, and
    no pattern is named for a level assess did not give the path."""
    policy = parse_policy(PATTERN_POLICY)
    assert isinstance(policy, Policy)
    paths = [*EXPECTED, *LOW_HERE, "services/x.sql", "services/payments/docs/a.sql"]
    risk = assess(policy, [ChangedFile(p) for p in paths], complete=True)
    assert set(risk.high_paths) | set(risk.medium_paths) == set(EXPECTED) | {
        "services/x.sql",
        "services/payments/docs/a.sql",
    }
    for path in paths:
        high, medium = pattern_for(policy, path, "HIGH"), pattern_for(policy, path, "MEDIUM")
        assert (high is not None) == (path in risk.high_paths), path
        assert (medium is not None) == (path in risk.medium_paths), path
        named = high or medium
        if named is not None:
            assert pathspec.GitIgnoreSpec.from_lines([named]).match_file(path), (path, named)
    assert pattern_for(policy, "services/payments/docs/a.sql", "HIGH") == "*.sql"
