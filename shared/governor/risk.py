"""Changed paths -> risk class. Pure: the caller fetches the diff."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum

import msgspec

from governor.policy import POLICY_PATH, Policy


class Risk(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class ChangedFile(msgspec.Struct, frozen=True):
    """One entry of GitHub's compare `files`: a rename carries its old name too."""

    filename: str
    status: str = "modified"
    previous_filename: str | None = None


class RiskAssessment(msgspec.Struct, frozen=True):
    level: Risk
    unknown: bool = False
    """True when the file list is not whole (GitHub truncated it, or it could not be fetched)."""
    high_paths: tuple[str, ...] = ()
    medium_paths: tuple[str, ...] = ()
    policy_changed: bool = False
    files_considered: int = 0
    notes: tuple[str, ...] = ()


class Comparison(msgspec.Struct, frozen=True):
    """GitHub's compare of BASE...HEAD: how head relates to base, and what it changes."""

    status: str
    """ahead, behind, identical or diverged: how head relates to base."""
    ahead_by: int
    behind_by: int
    files: tuple[ChangedFile, ...]
    complete: bool
    """False when GitHub may have left files out (it lists at most 300)."""

    @property
    def head_is_ancestor(self) -> bool:
        """Head is base or an ancestor of base: base already contains everything head has."""
        return self.status in ("identical", "behind")


def paths_of(files: Iterable[ChangedFile]) -> list[str]:
    """Every path a change touches: a renamed file counts under both names."""
    paths = []
    for changed in files:
        paths.append(changed.filename)
        if changed.previous_filename and changed.previous_filename != changed.filename:
            paths.append(changed.previous_filename)
    return paths


def assess(policy: Policy, files: Sequence[ChangedFile], *, complete: bool) -> RiskAssessment:
    """Classify a change. `complete=False` (truncated or unfetchable file list) is HIGH, unknown."""
    paths = paths_of(files)
    high = tuple(path for path in paths if policy.high_risk_spec.match_file(path))
    high_set = set(high)
    medium = tuple(
        path for path in paths if path not in high_set and policy.medium_risk_spec.match_file(path)
    )
    policy_changed = POLICY_PATH in paths
    notes = []
    if not complete:
        notes.append("the list of changed files is incomplete, so the risk is unknown")
    if policy_changed:
        notes.append(f"the release policy itself ({POLICY_PATH}) changed")
    if not complete or policy_changed or high:
        level = Risk.HIGH
    elif medium:
        level = Risk.MEDIUM
    else:
        level = Risk.LOW
    return RiskAssessment(
        level=level,
        unknown=not complete,
        high_paths=high,
        medium_paths=medium,
        policy_changed=policy_changed,
        files_considered=len(paths),
        notes=tuple(notes),
    )
