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

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Final, Literal

from governor.commands import EXIT_ERROR, CommandError, repos
from governor.flows.context import Repo, Trusted, read_trusted
from governor.policy import POLICY_PATH, ApprovalMode, Mode, Permission, Policy, PolicyProblem
from governor.policy import parse_policy as parse
from governor.wiring import Governor

Effect = Literal["stricter", "relaxes", "may_relax", "neutral"]
Applies = Literal["at_once", "once_trusted"]
DEFAULT_FILE: Final = POLICY_PATH
KEYS_DOC: Final = "docs/policy.md#keys"
TRUSTED_ONLY: Final = frozenset(
    {"enabled", "mode", "verification_workflow", "deploy_workflow", "deploy_ref"}
)
"""With every `approval.*` key: decided by the trusted policy alone."""
_LISTS: Final = frozenset(
    {"high_risk_paths", "medium_risk_paths", "freeze.weekly", "freeze.ranges"}
)


@dataclass(frozen=True, slots=True)
class Problem:
    key: str
    message: str
    fix: str


@dataclass(frozen=True, slots=True)
class Difference:
    key: str
    trusted: Any
    file: Any
    effect: Effect
    applies: Applies
    """`at_once`: a restriction, it holds the commit that carries it. `once_trusted`: only
    once the file is the trusted policy (deployed; before the first deploy, merged on the
    default branch)."""
    note: str


@dataclass(frozen=True, slots=True)
class TrustedComparison:
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


@dataclass(frozen=True, slots=True)
class PolicyCheck:
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


def _flat(dump: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in dump.items():
        if isinstance(value, dict):
            for sub, inner in value.items():
                flat[f"{key}.{sub}"] = inner
        else:
            flat[key] = value
    return flat


def _ordered(old: Any, new: Any, *, lower_relaxes: bool) -> Effect:
    if new == old:
        return "neutral"
    return "relaxes" if (new < old) == lower_relaxes else "stricter"


def _patterns(old: list[str], new: list[str]) -> tuple[Effect, str]:
    removed = [p for p in old if p not in new]
    added = [p for p in new if p not in old]
    relaxing = [p for p in removed if not p.startswith("!")] + [
        p for p in added if p.startswith("!")
    ]
    restricting = [p for p in added if not p.startswith("!")] + [
        p for p in removed if p.startswith("!")
    ]
    parts = [
        f"removes {', '.join(removed)}" if removed else "",
        f"adds {', '.join(added)}" if added else "",
    ]
    note = "; ".join(p for p in parts if p)
    if relaxing:
        return "relaxes", note + " (fewer paths match)"
    if restricting:
        return "stricter", note + " (more paths match)"
    if any(p.startswith("!") for p in new):
        return "may_relax", "reordered: with negations, the last matching pattern wins"
    return "neutral", "reordered"


def _items(old: list[Any], new: list[Any], what: str) -> tuple[Effect, str]:
    before = {json.dumps(i, sort_keys=True) for i in old}
    after = {json.dumps(i, sort_keys=True) for i in new}
    removed, added = len(before - after), len(after - before)
    note = f"{removed} {what} removed or changed, {added} added or changed"
    if removed:
        return "relaxes", note
    if added:
        return "stricter", note
    return "neutral", "reordered"


def _effect(key: str, old: Any, new: Any, file: dict[str, Any]) -> tuple[Effect, str]:  # noqa: PLR0911, PLR0912
    if key in ("high_risk_paths", "medium_risk_paths"):
        return _patterns(list(old), list(new))
    if key == "freeze.weekly":
        return _items(list(old), list(new), "weekly windows")
    if key == "freeze.ranges":
        return _items(list(old), list(new), "ranges")
    if key == "cooldown_minutes":
        return _ordered(old, new, lower_relaxes=True), "minutes a failed SHA waits"
    if key == "max_deploys_per_hour":
        return _ordered(old, new, lower_relaxes=False), "dispatches per trailing hour"
    if key == "approval.min_permission":
        ranks = (Permission(old).rank, Permission(new).rank)
        return _ordered(*ranks, lower_relaxes=True), "lowest permission of an approver"
    if key in ("enabled", "require_approval_for_first_deploy", "degraded.manual"):
        return ("relaxes" if old and not new else "stricter"), ""
    if key == "approval.allow_author":
        return ("relaxes" if new else "stricter"), "the author approving their own change"
    if key == "approval.mode":
        environment = ApprovalMode.ENVIRONMENT.value
        if new == environment:
            return "relaxes", "HIGH changes no longer need a recorded approval"
        return ("stricter" if old == environment else "neutral"), ""
    if key == "mode":
        shadow = Mode.SHADOW.value
        if new == shadow:
            return "relaxes", "shadow dispatches nothing and gates nothing"
        return ("stricter" if old == shadow else "neutral"), ""
    if key == "degraded.issue_label":
        if new is None:
            return "relaxes", "no issue label makes production degraded any more"
        if old is None:
            return "stricter", ""
        return "may_relax", f"open issues labelled '{old}' no longer count"
    if key == "freeze.timezone":
        windows = bool(file.get("freeze", {}).get("weekly"))
        return ("may_relax" if windows else "neutral"), "moves the weekly windows"
    return "neutral", ""


def differences(trusted: Policy, file: Policy) -> tuple[Difference, ...]:
    old, new = trusted.model_dump(mode="json"), file.model_dump(mode="json")
    flat_old, flat_new = _flat(old), _flat(new)
    found = []
    for key in flat_new:
        if flat_old.get(key) == flat_new[key]:
            continue
        effect, note = _effect(key, flat_old.get(key), flat_new[key], new)
        trusted_only = key in TRUSTED_ONLY or key.startswith("approval.")
        applies: Applies = (
            "at_once" if effect in ("stricter", "neutral") and not trusted_only else "once_trusted"
        )
        if trusted_only:
            note = (note + "; " if note else "") + "only the trusted policy decides this key"
        found.append(Difference(key, flat_old.get(key), flat_new[key], effect, applies, note))
    return tuple(found)


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
        relaxes=any(d.effect in ("relaxes", "may_relax") for d in found),
    )


def locate(governor: Governor, text: str) -> tuple[Repo, str | None]:
    """The repository through the App (its installation and default branch), and the
    production SHA from the store (None before the first deploy, or if the store has no
    state for it yet)."""
    ref = repos.parse_repo(text)
    state = repos.find_state(governor.store, ref)
    repo_id = state.repo_id if state is not None else ref.id
    name = state.repo if state is not None else ref.name
    wanted = name.lower() if name else None
    app = governor.app
    for installation_id in app.installation_ids():
        for installed in app.installed_repos(installation_id):
            if installed.id == repo_id or installed.full_name.lower() == wanted:
                repo = Repo(
                    id=installed.id,
                    full_name=installed.full_name,
                    default_branch=installed.default_branch,
                    installation_id=installation_id,
                    api=app.repo(installation_id, installed.full_name),
                )
                return repo, state.production_sha if state is not None else None
    raise CommandError(f"unknown repository '{ref}': the App is not installed on it", EXIT_ERROR)


def check_against(
    governor: Governor, checked: PolicyCheck, text: str, repo_text: str
) -> PolicyCheck:
    """`checked` with the difference from REPO's trusted policy (none for an invalid file)."""
    repo, production_sha = locate(governor, repo_text)
    trusted = read_trusted(repo, production_sha)
    file = parse(text)
    policy = file if isinstance(file, Policy) else None
    against = compare(policy, trusted, repo.id, repo.full_name, production_sha)
    return dataclasses.replace(checked, against=against)
