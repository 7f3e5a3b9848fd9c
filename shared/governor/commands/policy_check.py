"""`governor policy check [FILE] [--repo REPO]`: is a policy file usable, what it means,
and (with a repository) how it differs from the trusted policy.

The file is validated exactly as the governor reads it (`parse_policy`). With `--repo`,
the trusted policy is read through the App as reconcile reads it (`read_trusted`: the
file at production, or the default branch's), and every key that differs is classed as
stricter, relaxing, possibly relaxing or neutral. A restriction in a commit's own file
applies to that commit at once; a relaxation, and any key only the trusted policy
decides, applies only once the file is the trusted policy (docs/policy.md).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from governor.commands import EXIT_ERROR, CommandError, repos
from governor.flows.context import Trusted, read_trusted
from governor.policy import POLICY_PATH, ApprovalMode, Mode, Policy, PolicyProblem
from governor.policy import parse_policy as parse
from governor.policy_diff import (
    TRUSTED_ONLY,
    Applies,
    Difference,
    Effect,
    differences,
)
from governor.policy_diff import relaxes as any_relaxing
from governor.wiring import Governor

__all__ = [
    "TRUSTED_ONLY",
    "Applies",
    "Difference",
    "Effect",
    "PolicyCheck",
    "Problem",
    "TrustedComparison",
    "check_against",
    "check_text",
    "compare",
    "differences",
]

DEFAULT_FILE: Final = POLICY_PATH
KEYS_DOC: Final = "docs/policy.md#keys"


class Problem(msgspec.Struct, frozen=True):
    key: str
    message: str
    fix: str


class TrustedComparison(msgspec.Struct, frozen=True):
    repo_id: int
    repo: str
    production_sha: str | None
    trusted_source: str
    """`production <sha>` or `refs/heads/<default branch>`."""
    governed: bool
    """The trusted policy is present, valid and enabled."""
    trusted_problem: str | None
    differences: tuple[Difference, ...]
    relaxes: bool
    """Some difference relaxes (or may relax) the rules: exit 3."""


class PolicyCheck(msgspec.Struct, frozen=True):
    source: str
    valid: bool
    problem: Problem | None
    effective: dict[str, Any] | None
    """Every key with defaults filled in, as the governor would use it."""
    notes: tuple[str, ...]
    against: TrustedComparison | None = None


def _fix(problem: PolicyProblem) -> str:
    key, message = problem.key, problem.message
    if key.startswith("line ") or message.startswith("not valid YAML"):
        return f"fix the YAML syntax near {key} (quote clock times: start: '16:00')"
    if key == "(file)":
        return "write a mapping of keys to values, e.g. 'deploy_workflow: deploy.yml'"
    if message.startswith("unknown key: "):
        return f"remove {key}"
    if message.startswith("unknown key"):
        return f"remove {key} or correct its spelling (the keys: {KEYS_DOC})"
    return f"set {key} to a valid value ({KEYS_DOC})"


def _notes(policy: Policy) -> tuple[str, ...]:
    notes = []
    if not policy.enabled:
        notes.append(
            "enabled: false: once this is the trusted policy the governor leaves the "
            "repository alone (IGNORE, disabled)"
        )
    if policy.deploy_workflow is None:
        notes.append("no deploy_workflow: every SHA would be held deploy_not_configured")
    if policy.mode is Mode.SHADOW:
        notes.append("mode: shadow: decides and reports, never dispatches")
    elif policy.mode is None:
        notes.append("mode not set: the App's GOVERNOR_MODE applies (enforce by default)")
    if policy.approval.mode is ApprovalMode.ENVIRONMENT:
        notes.append(
            "approval.mode: environment: HIGH changes are dispatched without a "
            "recorded approval and wait for the environment's reviewers; configure "
            "required reviewers on it, or they deploy unreviewed"
        )
    if not policy.high_risk_paths:
        notes.append(
            "high_risk_paths is empty: only an incomplete file list or a change to "
            "the policy file is HIGH"
        )
    if policy.require_approval_for_first_deploy:
        notes.append("the first deploy needs an approval, whatever its risk")
    notes.append(
        f"a commit that changes {POLICY_PATH} is HIGH risk: it needs an approval "
        "under the trusted policy's rules"
    )
    return tuple(notes)


def check_text(text: str, source: str) -> PolicyCheck:
    """Validate a policy file's text and say what it means."""
    policy = parse(text)
    if policy is None:  # parse only answers None for no file at all
        raise CommandError(f"{source}: no policy text", EXIT_ERROR)
    if isinstance(policy, PolicyProblem):
        problem = Problem(policy.key, policy.message, _fix(policy))
        return PolicyCheck(source, False, problem, None, ())
    return PolicyCheck(source, True, None, policy.model_dump(mode="json"), _notes(policy))


# -- the difference from the trusted policy ------------------------------------------------


def compare(
    file: Policy | None, trusted: Trusted, repo_id: int, repo: str, production_sha: str | None
) -> TrustedComparison:
    governing = trusted.governing
    problem = str(trusted.policy) if isinstance(trusted.policy, PolicyProblem) else None
    found = (
        differences(trusted.policy, file)
        if isinstance(trusted.policy, Policy) and file is not None
        else ()
    )
    return TrustedComparison(
        repo_id=repo_id,
        repo=repo,
        production_sha=production_sha,
        trusted_source=trusted.source,
        governed=governing is not None,
        trusted_problem=problem,
        differences=found,
        relaxes=any_relaxing(found),
    )


def check_against(
    governor: Governor, checked: PolicyCheck, text: str, repo_text: str
) -> PolicyCheck:
    """`checked` with the difference from REPO's trusted policy (none for an invalid file)."""
    repo, production_sha = repos.locate(governor, repo_text)
    trusted = read_trusted(repo, production_sha)
    file = parse(text)
    policy = file if isinstance(file, Policy) else None
    against = compare(policy, trusted, repo.id, repo.full_name, production_sha)
    return msgspec.structs.replace(checked, against=against)
