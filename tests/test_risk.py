"""Risk classes from real-world paths, with gitignore semantics."""

from __future__ import annotations

import pytest
from governor.policy import POLICY_PATH
from governor.risk import ChangedFile, Risk, assess, paths_of

from tests.support.decisions import policy

DEFAULT = policy()


def level(*paths: str, complete: bool = True) -> Risk:
    return assess(DEFAULT, [ChangedFile(p) for p in paths], complete=complete).level


@pytest.mark.parametrize(
    "path",
    [
        ".github/workflows/deploy.yml",
        ".github/actions/setup/action.yml",
        "infra/gcp/main.tf",
        "modules/network/vpc.tf",
        "db/migrations/0042_add_index.sql",
        "services/billing/src/main/resources/db/migrations/V3__x.sql",
        "app/auth/session.py",
        "package-lock.json",
        "web/yarn.lock",
        "poetry.lock",
        "go.sum",
        POLICY_PATH,
    ],
)
def test_high_risk_paths(path: str) -> None:
    assert level("README.md", path) is Risk.HIGH


@pytest.mark.parametrize(
    "path",
    ["package.json", "requirements-dev.txt", "services/api/Dockerfile", "go.mod", "pyproject.toml"],
)
def test_medium_risk_paths(path: str) -> None:
    assert level("src/app.py", path) is Risk.MEDIUM


@pytest.mark.parametrize(
    "path", ["src/app.py", "docs/guide.md", "web/src/Button.tsx", "authors.txt"]
)
def test_low_risk_paths(path: str) -> None:
    assert level(path) is Risk.LOW


def test_a_rename_counts_under_both_names() -> None:
    moved_out = ChangedFile(
        "src/old_migration.sql", "renamed", previous_filename="db/migrations/1.sql"
    )
    assert paths_of([moved_out]) == ["src/old_migration.sql", "db/migrations/1.sql"]
    result = assess(DEFAULT, [moved_out], complete=True)
    assert result.level is Risk.HIGH and result.high_paths == ("db/migrations/1.sql",)


def test_a_removed_file_counts() -> None:
    assert (
        assess(DEFAULT, [ChangedFile("db/migrations/1.sql", "removed")], complete=True).level
        is Risk.HIGH
    )


def test_an_incomplete_file_list_is_high_and_unknown() -> None:
    result = assess(DEFAULT, [ChangedFile("docs/a.md")], complete=False)
    assert result.level is Risk.HIGH and result.unknown
    assert any("incomplete" in note for note in result.notes)


def test_a_change_to_the_policy_is_high_even_with_custom_patterns() -> None:
    custom = policy("high_risk_paths: ['secrets/**']\nmedium_risk_paths: []\n")
    result = assess(custom, [ChangedFile(POLICY_PATH)], complete=True)
    assert result.level is Risk.HIGH and result.policy_changed


def test_negation_patterns_carve_out_exceptions() -> None:
    custom = policy("high_risk_paths: ['**/migrations/**', '!docs/**']\nmedium_risk_paths: []\n")
    assert (
        assess(custom, [ChangedFile("docs/migrations/howto.md")], complete=True).level is Risk.LOW
    )
    assert assess(custom, [ChangedFile("api/migrations/1.sql")], complete=True).level is Risk.HIGH


def test_matched_paths_are_reported_per_class() -> None:
    files = [ChangedFile(p) for p in ["src/a.py", "package.json", ".github/workflows/ci.yml"]]
    result = assess(DEFAULT, files, complete=True)
    assert result.high_paths == (".github/workflows/ci.yml",)
    assert result.medium_paths == ("package.json",)
    assert result.files_considered == 3


def test_no_changes_is_low() -> None:
    assert assess(DEFAULT, [], complete=True).level is Risk.LOW
