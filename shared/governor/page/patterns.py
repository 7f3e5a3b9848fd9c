"""The pattern behind each risky path of an evaluation, from the policy text its record
keeps. Pure. Used by the decision page and by `governor explain`.

An evaluation the rules made keeps, in its replay, the digests of the policies it was
judged under, and its decision record keeps their texts. The paths an evaluation lists
(`inputs.high_paths`, `inputs.medium_paths`) are the risk under the policy whose
decision it reports (`inputs.decided_by`): the trusted policy's, or the SHA's own when
that was stricter (a broken own policy reports the trusted policy's risk). That text is
parsed again (`policy.parse_policy`) and each path is looked up in the very pathspec
specs `risk.assess` classed it with (`Policy.high_risk_spec`, `.medium_risk_spec`): the
pattern named is the one that decided the match, the last matching one as gitignore
rules go, and a pattern is named only where that spec classes the path as recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

import msgspec
import pathspec

from governor.ledger import DecisionRecord, Evaluation
from governor.policy import Policy, parse_policy

Level = Literal["HIGH", "MEDIUM"]
_LISTS: Final[tuple[tuple[str, Level], ...]] = (("high_paths", "HIGH"), ("medium_paths", "MEDIUM"))


class RiskPolicy(msgspec.Struct, frozen=True):
    """The policy whose patterns classed an evaluation's paths."""

    policy: Policy
    whose: Literal["trusted", "own"]
    """The trusted policy, or the SHA's own (it decided, stricter)."""
    read_at: str
    """Where the trusted policy was read: `production <sha>` or `refs/heads/<branch>`."""

    def describe(self) -> str:
        if self.whose == "own":
            return "this SHA's own policy, as the decision record keeps it"
        return f"the trusted policy read at {self.read_at}, as the decision record keeps it"


class MatchedPath(msgspec.Struct, frozen=True):
    path: str
    level: Level
    pattern: str | None
    """The pattern that classed it; None: not known (no policy text kept)."""


def risk_policy(record: DecisionRecord, evaluation: Evaluation) -> RiskPolicy | None:
    """The policy `evaluation`'s risk was assessed under, parsed from the text `record`
    keeps; None when the record does not keep it (no replay, an older record, a text
    that is not a valid policy)."""
    replay = record.replay_of(evaluation)
    if replay is None:
        return None
    trusted = _parsed(replay.policies, replay.trusted_policy)
    if trusted is None:
        return None
    if evaluation.inputs.get("decided_by") == "own":
        own = _parsed(replay.policies, replay.own_policy)
        if own is not None:
            return RiskPolicy(own, "own", replay.trusted_source)
        if replay.own_policy is None:  # decided by its own policy, whose text is not kept
            return None
        # a broken own policy: the risk reported is the trusted policy's
    return RiskPolicy(trusted, "trusted", replay.trusted_source)


def _parsed(texts: dict[str, str], key: str | None) -> Policy | None:
    if key is None or key not in texts:
        return None
    policy = parse_policy(texts[key])
    return policy if isinstance(policy, Policy) else None


def pattern_for(policy: Policy, path: str, level: Level) -> str | None:
    """The pattern of `policy` that makes `path` `level` as `risk.assess` classes it (a
    HIGH match wins over MEDIUM); None if `policy` does not class it so."""
    high = _deciding(policy.high_risk_spec, policy.high_risk_paths, path)
    if level == "HIGH":
        return high
    if high is not None:
        return None  # HIGH under this policy, not MEDIUM
    return _deciding(policy.medium_risk_spec, policy.medium_risk_paths, path)


def _deciding(spec: pathspec.GitIgnoreSpec, patterns: Sequence[str], path: str) -> str | None:
    result = spec.check_file(path)  # what `match_file` (risk.assess) answers, with its index
    lines = [line for line in patterns if line]  # the lines `from_lines` made patterns of
    if not result.include or result.index is None or not 0 <= result.index < len(lines):
        return None
    return lines[result.index]


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def matched_paths(
    record: DecisionRecord, evaluation: Evaluation, policy: Policy | None = None
) -> tuple[tuple[MatchedPath, ...], RiskPolicy | None]:
    """The HIGH then MEDIUM paths `evaluation` lists, each with the pattern that classed
    it, and the stored policy the patterns came from. `policy` (explain's `--policy`
    file) takes precedence over the stored text; without either, no pattern is named."""
    stored = risk_policy(record, evaluation) if policy is None else None
    using = policy if policy is not None else stored.policy if stored is not None else None
    found: list[MatchedPath] = []
    for key, level in _LISTS:
        found.extend(
            MatchedPath(path, level, pattern_for(using, path, level) if using else None)
            for path in _strings(evaluation.inputs.get(key))
        )
    return tuple(found), stored
