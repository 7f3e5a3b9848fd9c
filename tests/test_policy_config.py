"""Policy files and app settings: strict, with errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from governor.policy import (
    DEFAULT_HIGH_RISK_PATHS,
    ApprovalMode,
    Permission,
    Policy,
    PolicyProblem,
    parse_policy,
)
from governor.settings import ConfigError, load_settings


def problem(text: str) -> PolicyProblem:
    result = parse_policy(text)
    assert isinstance(result, PolicyProblem), result
    return result


def test_no_file_means_not_governed() -> None:
    assert parse_policy(None) is None


def test_empty_file_gives_the_defaults() -> None:
    result = parse_policy("")
    assert isinstance(result, Policy)
    assert result.enabled and result.deploy_workflow is None
    assert result.high_risk_paths == DEFAULT_HIGH_RISK_PATHS
    assert result.approval.mode is ApprovalMode.LABEL
    assert result.approval.min_permission is Permission.MAINTAIN
    assert result.cooldown_minutes == 30 and result.max_deploys_per_hour == 6


def test_a_full_policy_parses() -> None:
    result = parse_policy(
        """
deploy_workflow: deploy.yml
deploy_ref: main
verification_workflow: CI
cooldown_minutes: 15
max_deploys_per_hour: 3
approval: {mode: comment, command: /ship-it, min_permission: write, allow_author: true}
degraded: {issue_label: sev1, manual: false}
freeze:
  timezone: Europe/Berlin
  weekly: [{days: [fri], start: "16:00", end: "24:00", reason: weekend}]
  ranges: [{start: "2026-12-24T00:00:00+01:00", end: "2026-12-27T00:00:00+01:00", reason: holidays}]
mode: shadow
"""
    )
    assert isinstance(result, Policy)
    assert result.approval.command == "/ship-it"
    assert result.freeze.weekly[0].end_minute == 24 * 60


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("deploy_workfow: deploy.yml", "deploy_workfow", "unknown key"),
        ("approval: {mode: vote}", "approval.mode", "label"),
        ("approval: {min_permission: owner}", "approval.min_permission", "admin"),
        ("cooldown_minutes: -1", "cooldown_minutes", "greater than or equal"),
        ("max_deploys_per_hour: 0", "max_deploys_per_hour", "greater than or equal"),
        ("deploy_workflow: ../../evil", "deploy_workflow", "workflow file name"),
        ("freeze: {timezone: Mars/Olympus}", "freeze.timezone", "unknown IANA time zone"),
        (
            "freeze: {weekly: [{days: [fri], start: '25:00', end: '26:00'}]}",
            "freeze.weekly.0.start",
            "pattern",
        ),
        (
            "freeze: {weekly: [{days: [fri], start: '10:00', end: '10:00'}]}",
            "freeze.weekly.0",
            "empty",
        ),
        (
            "freeze: {weekly: [{days: [funday], start: '10:00', end: '11:00'}]}",
            "freeze.weekly.0.days.0",
            "mon",
        ),
        (
            "freeze: {ranges: [{start: '2026-12-24T00:00', end: '2026-12-25T00:00', reason: x}]}",
            "freeze.ranges.0",
            "UTC offset",
        ),
        ("enabled: maybe", "enabled", "boolean"),
        ("- just\n- a list", "(file)", "mapping"),
        ("deploy_workflow: [unclosed", "line 1", "not valid YAML"),
    ],
)
def test_problems_name_the_key(text: str, key: str, words: str) -> None:
    found = problem(text)
    assert found.key == key
    assert words in found.message
    assert key in str(found) and ".github/release-governor.yml" in str(found)


def test_settings_name_every_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GOVERNOR_STORE_URL", "GOVERNOR_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "GOVERNOR_STORE_URL" in str(info.value) and "GOVERNOR_WEBHOOK_SECRET" in str(info.value)


def test_settings_defaults_and_private_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOVERNOR_STORE_URL", "file:///tmp/x")
    monkeypatch.setenv("GOVERNOR_WEBHOOK_SECRET", "s" * 16)
    settings = load_settings()
    assert settings.status_context == "release-governor"
    assert settings.github_api_url == "https://api.github.com"
    assert settings.mode == "enforce"
    with pytest.raises(ConfigError, match="GOVERNOR_GITHUB_PRIVATE_KEY_PATH"):
        settings.private_key_pem()
    key_file = tmp_path / "key.pem"
    key_file.write_text("PEM DATA")
    monkeypatch.setenv("GOVERNOR_GITHUB_PRIVATE_KEY_PATH", str(key_file))
    assert load_settings().private_key_pem() == "PEM DATA"
    monkeypatch.setenv("GOVERNOR_GITHUB_PRIVATE_KEY", "inline")
    with pytest.raises(ConfigError, match="not both"):
        load_settings()
    monkeypatch.delenv("GOVERNOR_GITHUB_PRIVATE_KEY")
    monkeypatch.setenv("GOVERNOR_MODE", "yolo")
    with pytest.raises(ConfigError, match="GOVERNOR_MODE"):
        load_settings()


def test_unquoted_yaml_times_are_read_as_times() -> None:
    result = parse_policy("freeze: {weekly: [{days: [fri], start: 16:00, end: 24:00}]}")
    assert isinstance(result, Policy)
    assert (result.freeze.weekly[0].start, result.freeze.weekly[0].end) == ("16:00", "24:00")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (
            "freeze: {weekly: [{days: [fri], start: '24:00', end: '02:00'}]}",
            "freeze.weekly.0.start",
        ),
        ("default_branch: ''", "default_branch"),
        ("high_risk_paths: ['']", "high_risk_paths"),
        ("degraded: {issue_label: ''}", "degraded.issue_label"),
    ],
)
def test_empty_or_out_of_range_values_are_refused(text: str, key: str) -> None:
    assert problem(text).key == key
