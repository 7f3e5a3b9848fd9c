"""`governor policy check`: validation and meaning of a file, and with `--repo` its
difference from the trusted policy read through the App (the fake GitHub) as reconcile
reads it: the file at production, not the default branch's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from governor.cli import main
from governor.policy import DEFAULT_HIGH_RISK_PATHS, POLICY_PATH

from tests.support.e2e import deployed_base, function_env, new_repo
from tests.support.fake_github import FakeGitHub
from tests.support.governed import BASE_POLICY, sha_for

GOVERNOR = str(Path(sys.executable).with_name("governor"))
PRODUCTION_POLICY = BASE_POLICY + "cooldown_minutes: 30\nmax_deploys_per_hour: 6\n"
RELAXING = (
    BASE_POLICY
    + """
cooldown_minutes: 5
max_deploys_per_hour: 20
high_risk_paths: [".github/workflows/**", "*.tf", "!legacy/*.tf"]
approval:
  mode: environment
  allow_author: true
"""
)
STRICTER = (
    PRODUCTION_POLICY.replace("cooldown_minutes: 30", "cooldown_minutes: 60")
    + """
freeze:
  ranges:
    - start: 2030-12-23T12:00:00+01:00
      end: 2031-01-04T00:00:00+01:00
      reason: year-end
"""
)


def check(
    tmp_path: Path, text: str, *args: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, Any, str]:
    path = tmp_path / "policy.yml"
    path.write_text(text)
    code = main(["--json", "policy", "check", str(path), *args])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out else None, err


def test_a_valid_file_shows_every_setting_with_defaults_filled_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, result, _ = check(tmp_path, "deploy_workflow: deploy.yml\n", capsys=capsys)
    assert code == 0 and result["valid"] is True and result["problem"] is None
    effective = result["effective"]
    assert effective["deploy_workflow"] == "deploy.yml"
    assert effective["cooldown_minutes"] == 30 and effective["max_deploys_per_hour"] == 6
    assert effective["high_risk_paths"] == list(DEFAULT_HIGH_RISK_PATHS)
    assert effective["approval"] == {
        "mode": "label",
        "label": "deploy-approved",
        "command": "/approve-deploy",
        "min_permission": "maintain",
        "allow_author": False,
    }
    assert effective["freeze"] == {"timezone": "UTC", "weekly": [], "ranges": []}
    assert any("HIGH risk" in note for note in result["notes"])
    assert result["against"] is None

    code, result, _ = check(tmp_path, "", capsys=capsys)  # empty: governed, nothing to deploy
    assert code == 0
    assert any("deploy_not_configured" in note for note in result["notes"])


@pytest.mark.parametrize(
    ("text", "key", "fix"),
    [
        ("approval:\n  modee: label\n", "approval.modee", "remove approval.modee or correct"),
        ("default_branch: main\n", "default_branch", "remove default_branch"),
        ("cooldown_minutes: -1\n", "cooldown_minutes", "set cooldown_minutes to a valid value"),
        ("deploy_workflow: [a\n", "line 2", "fix the YAML syntax near line 2"),
        ("- a list\n", "(file)", "write a mapping of keys to values"),
        ("freeze:\n  timezone: Mars/Olympus\n", "freeze.timezone", "set freeze.timezone"),
    ],
)
def test_an_invalid_file_names_the_key_and_what_to_do_and_exits_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str, fix: str
) -> None:
    code, result, _ = check(tmp_path, text, capsys=capsys)
    assert code == 4
    assert result["valid"] is False and result["effective"] is None
    assert result["problem"]["key"] == key
    assert result["problem"]["fix"].startswith(fix), result["problem"]


def test_text_output_and_the_default_file_and_a_missing_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["policy", "check"]) == 1
    assert f"cannot read {POLICY_PATH}" in capsys.readouterr().err
    (tmp_path / ".github").mkdir()
    (tmp_path / POLICY_PATH).write_text("deploy_workflow: deploy.yml\ncooldown_minutes: 45\n")
    assert main(["policy", "check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{POLICY_PATH}: valid\n")
    assert "  cooldown_minutes: 45\n" in out and "  - infra/**\n" in out
    (tmp_path / POLICY_PATH).write_text('approval:\n  "\\e[31mevil\\n": label\n')
    assert main(["policy", "check"]) == 4
    out = capsys.readouterr().out
    assert "INVALID" in out and "  key: approval.?[31mevil\n" in out and "\x1b" not in out


# -- against the trusted policy ----------------------------------------------------------


@pytest.fixture
def app_env(fake: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = function_env(fake, (tmp_path / "store").as_uri())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_a_relaxing_file_is_compared_with_production_s_policy_and_exits_3(
    fake: FakeGitHub, app_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gov = new_repo(fake, app_env["GOVERNOR_STORE_URL"], "http://unused.invalid")
    base = deployed_base(gov, PRODUCTION_POLICY)
    # The default branch already has the relaxed file: production's still governs.
    gov.repo.set_file(POLICY_PATH, RELAXING, ref="main")

    code, result, err = check(tmp_path, RELAXING, "--repo", gov.repo.full_name, capsys=capsys)

    assert code == 3, err
    against = result["against"]
    assert against["repo_id"] == gov.repo.repo_id and against["production_sha"] == base
    assert against["trusted_source"] == f"production {base}"
    assert against["governed"] is True and against["relaxes"] is True
    found = {d["key"]: d for d in against["differences"]}
    assert set(found) == {
        "cooldown_minutes",
        "max_deploys_per_hour",
        "high_risk_paths",
        "approval.mode",
        "approval.allow_author",
    }
    assert (found["cooldown_minutes"]["trusted"], found["cooldown_minutes"]["file"]) == (30, 5)
    assert {d["effect"] for d in found.values()} == {"relaxes"}
    assert {d["applies"] for d in found.values()} == {"once_trusted"}
    assert "removes .github/actions/**" in found["high_risk_paths"]["note"]
    assert "adds *.tf, !legacy/*.tf" not in found["high_risk_paths"]["note"]  # *.tf was there
    assert "adds !legacy/*.tf" in found["high_risk_paths"]["note"]

    assert (
        main(
            [
                "policy",
                "check",
                str(tmp_path / "policy.yml"),
                "--repo",
                str(gov.repo.repo_id),
            ]
        )
        == 3
    )
    text = capsys.readouterr().out
    assert (
        f"against {gov.repo.full_name} (id {gov.repo.repo_id}), "
        f"trusted policy at production {base}:" in text
    )
    assert "  cooldown_minutes: 30 -> 5  relaxes, applies once trusted" in text
    assert "RELAXES the trusted rules" in text


def test_a_stricter_file_applies_at_once_and_exits_0(
    fake: FakeGitHub, app_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gov = new_repo(fake, app_env["GOVERNOR_STORE_URL"], "http://unused.invalid")
    deployed_base(gov, PRODUCTION_POLICY)
    more = STRICTER.replace(
        "max_deploys_per_hour: 6", "max_deploys_per_hour: 2\napproval:\n  mode: comment"
    )

    code, result, err = check(tmp_path, more, "--repo", gov.repo.full_name, capsys=capsys)

    assert code == 0, err
    found = {d["key"]: d for d in result["against"]["differences"]}
    assert {k: (d["effect"], d["applies"]) for k, d in found.items()} == {
        "cooldown_minutes": ("stricter", "at_once"),
        "max_deploys_per_hour": ("stricter", "at_once"),
        "freeze.ranges": ("stricter", "at_once"),
        # label -> comment relaxes nothing, but only the trusted policy decides it
        "approval.mode": ("neutral", "once_trusted"),
    }
    assert result["against"]["relaxes"] is False
    code, same, _ = check(tmp_path, PRODUCTION_POLICY, "--repo", gov.repo.full_name, capsys=capsys)
    assert code == 0 and same["against"]["differences"] == []


def test_a_repository_without_a_policy_or_production_and_an_invalid_file(
    fake: FakeGitHub, app_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gov = new_repo(fake, app_env["GOVERNOR_STORE_URL"], "http://unused.invalid")
    readme = sha_for(f"{gov.repo.full_name}:readme")
    gov.repo.add_commit(readme, files=[{"filename": "README.md", "status": "added"}])
    # Not in the store at all (never evaluated): found through the App's installation.
    code, result, err = check(tmp_path, RELAXING, "--repo", gov.repo.full_name, capsys=capsys)
    assert code == 0, err
    against = result["against"]
    assert against["governed"] is False and against["production_sha"] is None
    assert against["trusted_source"] == "refs/heads/main" and against["differences"] == []

    gov.repo.set_file(POLICY_PATH, "approval:\n  modee: x\n", ref="main")
    code, result, _ = check(tmp_path, "nope: 1\n", "--repo", gov.repo.full_name, capsys=capsys)
    assert code == 4  # the file's own problem comes first
    assert result["against"]["trusted_problem"].endswith(
        "approval.modee: unknown key (see docs/policy.md for the keys)"
    )

    code, _, err = check(tmp_path, RELAXING, "--repo", "octo/not-installed", capsys=capsys)
    assert code == 1 and "the App is not installed on it" in err


def test_repo_needs_the_app_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("GOVERNOR_")]:
        monkeypatch.delenv(name)
    code, _, err = check(tmp_path, BASE_POLICY, "--repo", "octo/x", capsys=capsys)
    assert code == 2 and "GOVERNOR_" in err


def test_policy_check_as_the_installed_command(fake: FakeGitHub, tmp_path: Path) -> None:
    store_url = (tmp_path / "store").as_uri()
    gov = new_repo(fake, store_url, "http://unused.invalid")
    deployed_base(gov, PRODUCTION_POLICY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNOR_")}

    def run(
        *args: str, stdin: str, extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [GOVERNOR, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**env, **(extra or {})},
            check=False,
        )

    assert run("policy", "check", "-", stdin=BASE_POLICY).returncode == 0
    invalid = run("policy", "check", "-", stdin="approval: null\n")
    assert invalid.returncode == 4 and "(stdin): INVALID" in invalid.stdout
    relaxing = run(
        "policy",
        "check",
        "-",
        "--repo",
        gov.repo.full_name,
        "--json",
        stdin=RELAXING,
        extra=function_env(fake, store_url),
    )
    assert relaxing.returncode == 3, relaxing.stderr
    assert json.loads(relaxing.stdout)["against"]["relaxes"] is True
    helped = run("policy", "check", "--help", stdin="")
    assert helped.returncode == 0 and "Exit status" in helped.stdout
