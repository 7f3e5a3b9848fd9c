"""How a policy file differs from the trusted policy, key by key, and whether each change
makes the rules stricter or relaxes them. Pure: values in, values out.

A restriction in a commit's own file applies to that commit at once; a relaxation, and
any key only the trusted policy decides, applies only once the file is the trusted
policy (docs/policy.md). Used by `governor policy check` and by the policy review of
pull requests (`flows/policy_review.py`).
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal

import msgspec

from governor.policy import ApprovalMode, Mode, Permission, Policy

Effect = Literal["stricter", "relaxes", "may_relax", "neutral"]
Applies = Literal["at_once", "once_trusted"]
RELAXING: Final[frozenset[Effect]] = frozenset({"relaxes", "may_relax"})
"""Effects that loosen the rules (or may, depending on what else the file says)."""
TRUSTED_ONLY: Final = frozenset(
    {"enabled", "mode", "verification_workflow", "deploy_workflow", "deploy_ref"}
)
"""With every `approval.*` key: decided by the trusted policy alone."""


class Difference(msgspec.Struct, frozen=True):
    key: str
    trusted: Any
    file: Any
    effect: Effect
    applies: Applies
    """`at_once`: a restriction, it holds the commit that carries it. `once_trusted`: only
    once the file is the trusted policy (deployed; before the first deploy, merged on the
    default branch)."""
    note: str


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
    """Every key whose value in `file` differs from the trusted policy's, in the schema's
    order, with its effect on the rules."""
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


def relaxes(found: tuple[Difference, ...]) -> bool:
    """Some difference relaxes (or may relax) the rules."""
    return any(d.effect in RELAXING for d in found)
