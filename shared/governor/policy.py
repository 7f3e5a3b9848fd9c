"""A repository's release policy (`.github/release-governor.yml`) as a strict model.

An unknown key is an error that names the key. A policy problem is returned as a value
(`PolicyProblem`), never raised to the caller, because a bad policy file is something a
user pushes and the governor must answer with a HOLD that says which key to fix.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pathspec
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

POLICY_PATH: Final = ".github/release-governor.yml"
REMOVED_POLICY_KEYS: Final = {
    "default_branch": "default_branch was removed; the governor uses the repository's default "
    "branch from GitHub's settings",
}


class Mode(StrEnum):
    ENFORCE = "enforce"
    """Dispatch on ALLOW, post failing statuses on HOLD."""
    SHADOW = "shadow"
    """Decide and record, post neutral statuses, dispatch nothing: for trying a policy out."""


DEFAULT_HIGH_RISK_PATHS: Final = (
    ".github/workflows/**",
    ".github/actions/**",
    "infra/**",
    "terraform/**",
    "*.tf",
    "**/migrations/**",
    "**/migrate/**",
    "**/auth/**",
    "**/security/**",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "poetry.lock",
    "Pipfile.lock",
    "uv.lock",
    "Cargo.lock",
    "go.sum",
    "Gemfile.lock",
    "composer.lock",
)
DEFAULT_MEDIUM_RISK_PATHS: Final = (
    "package.json",
    "requirements*.txt",
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "Pipfile",
    "go.mod",
    "Cargo.toml",
    "Gemfile",
    "composer.json",
    "pom.xml",
    "*.gradle",
    "*.gradle.kts",
    "Dockerfile",
    "**/Dockerfile",
    "docker-compose*.yml",
)


class Permission(StrEnum):
    """Repository permission levels, lowest first (GitHub's role names)."""

    READ = "read"
    TRIAGE = "triage"
    WRITE = "write"
    MAINTAIN = "maintain"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Permission).index(self)


class ApprovalMode(StrEnum):
    LABEL = "label"
    COMMENT = "comment"
    ENVIRONMENT = "environment"


class _Strict(BaseModel):
    # Built on first use: a cold start builds only the models its event needs.
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, defer_build=True
    )


def _check_patterns(patterns: tuple[str, ...]) -> tuple[str, ...]:
    if any(not pattern.strip() for pattern in patterns):
        raise ValueError("empty pattern")
    try:
        pathspec.GitIgnoreSpec.from_lines(patterns)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a valid gitignore pattern: {exc}") from None
    return patterns


PathPatterns = Annotated[tuple[str, ...], AfterValidator(_check_patterns)]


class ApprovalPolicy(_Strict):
    mode: ApprovalMode = ApprovalMode.LABEL
    label: str = Field(default="deploy-approved", min_length=1)
    command: str = Field(default="/approve-deploy", min_length=2, pattern=r"^/\S+$")
    min_permission: Permission = Permission.MAINTAIN
    allow_author: bool = False


DEFAULT_DEGRADED_LABEL: Final = "production-degraded"


class DegradedPolicy(_Strict):
    issue_label: str | None = Field(
        default=DEFAULT_DEGRADED_LABEL,
        min_length=1,
        description="Production counts as degraded while an open issue has this label.",
    )
    manual: bool = Field(
        default=False, description="Declare production degraded by hand, in the policy."
    )


_DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK_START = r"^([01]\d|2[0-3]):[0-5]\d$"
_CLOCK_END = r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$"


def _clock_text(value: object) -> object:
    """YAML 1.1 reads an unquoted 16:00 as the base-60 number 960: turn it back into 16:00."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 24 * 60:
        return f"{value // 60:02d}:{value % 60:02d}"
    return value


Clock = Annotated[str, BeforeValidator(_clock_text)]


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class WeeklyWindow(_Strict):
    """A deny window every week, in the policy's time zone; `end` before `start` spans midnight."""

    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = Field(min_length=1)
    start: Clock = Field(pattern=_CLOCK_START, description="HH:MM, local time")
    end: Clock = Field(pattern=_CLOCK_END, description="HH:MM local time, 24:00 for midnight")
    reason: str = Field(default="weekly freeze", min_length=1)

    @model_validator(mode="after")
    def _not_empty(self) -> WeeklyWindow:
        if self.start == self.end:
            raise ValueError("start and end are equal: the window would be empty")
        return self

    @property
    def weekdays(self) -> frozenset[int]:
        return frozenset(_DAYS.index(day) for day in self.days)

    @property
    def start_minute(self) -> int:
        return _minutes(self.start)

    @property
    def end_minute(self) -> int:
        return _minutes(self.end)


class FreezeRange(_Strict):
    """A one-off freeze, e.g. a holiday or an event. Times need a UTC offset."""

    start: datetime
    end: datetime
    reason: str = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered_and_aware(self) -> FreezeRange:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a UTC offset, e.g. 2026-12-24T00:00:00+01:00")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class FreezePolicy(_Strict):
    timezone: str = "UTC"
    weekly: tuple[WeeklyWindow, ...] = ()
    ranges: tuple[FreezeRange, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/Berlin)") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Policy(_Strict):
    """A repository's release policy. Every key is optional; see docs/policy.md."""

    enabled: bool = True
    verification_workflow: str = Field(
        default="verify-main.yml",
        min_length=1,
        description="Workflow name, or file name / path under .github/workflows.",
    )
    deploy_workflow: str | None = Field(default=None, description="File name, e.g. deploy.yml.")
    deploy_ref: str | None = Field(
        default=None,
        min_length=1,
        description="Branch to dispatch on (default: the repository's default branch).",
    )
    high_risk_paths: PathPatterns = DEFAULT_HIGH_RISK_PATHS
    medium_risk_paths: PathPatterns = DEFAULT_MEDIUM_RISK_PATHS
    cooldown_minutes: int = Field(default=30, ge=0, le=7 * 24 * 60)
    max_deploys_per_hour: int = Field(default=6, ge=1, le=1000)
    # Factories, not instances: an instance here would build these models at import.
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    require_approval_for_first_deploy: bool = False
    degraded: DegradedPolicy = Field(default_factory=DegradedPolicy)
    freeze: FreezePolicy = Field(default_factory=FreezePolicy)
    mode: Mode | None = None

    @field_validator("deploy_workflow")
    @classmethod
    def _workflow_file(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[\w.-]+\.ya?ml", value):
            raise ValueError("must be a workflow file name such as deploy.yml")
        return value

    @field_validator("deploy_ref")
    @classmethod
    def _branch_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        branch = value.removeprefix("refs/heads/")
        if branch.startswith("refs/") or not re.fullmatch(r"[\w./-]+", branch) or ".." in branch:
            raise ValueError("must be a branch name such as main (not a tag, SHA or other ref)")
        return branch

    @functools.cached_property
    def high_risk_spec(self) -> pathspec.GitIgnoreSpec:
        return pathspec.GitIgnoreSpec.from_lines(self.high_risk_paths)

    @functools.cached_property
    def medium_risk_spec(self) -> pathspec.GitIgnoreSpec:
        return pathspec.GitIgnoreSpec.from_lines(self.medium_risk_paths)


class PolicyProblem(_Strict):
    """Why a policy file cannot be used: which key, and what is wrong with it."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{POLICY_PATH}: {self.key}: {self.message}"


def parse_policy(text: str | None) -> Policy | PolicyProblem | None:
    """The policy in `text`, a PolicyProblem saying what to fix, or None if there is no file.

    No file means the repository has not opted in: the governor leaves it alone. Both
    results are immutable, so the same text (three reads of one evaluation, the next
    delivery) is parsed and its patterns compiled once per process.
    """
    if text is None:
        return None
    if len(text) > _CACHED_TEXT_LIMIT:
        return _parse(text)
    return _parse_cached(text)


_CACHED_TEXT_LIMIT: Final = 64 * 1024


def _parse(text: str) -> Policy | PolicyProblem:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f"line {where.line + 1}" if where is not None else "(file)"
        return PolicyProblem(key=line, message=f"not valid YAML: {getattr(exc, 'problem', exc)}")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return PolicyProblem(key="(file)", message="must be a mapping of keys to values")
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(file)"
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            removed = REMOVED_POLICY_KEYS.get(key)
            message = (
                f"unknown key: {removed}"
                if removed
                else "unknown key (see docs/policy.md for the keys)"
            )
        return PolicyProblem(key=key, message=message)


_parse_cached: Final = functools.lru_cache(maxsize=128)(_parse)
