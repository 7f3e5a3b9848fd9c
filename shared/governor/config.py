"""Settings: the app's (GOVERNOR_* environment) and each repository's release policy (YAML).

Both are strict: an unknown key is an error that names the key. A policy problem is
returned as a value (`PolicyProblem`), never raised to the caller, because a bad policy
file is something a user pushes and the governor must answer with a HOLD that says
which key to fix.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from enum import StrEnum
from pathlib import Path
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
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from governor.store.base import DEFAULT_WRITE_TIMEOUT_S

POLICY_PATH: Final = ".github/release-governor.yml"
MIN_SECRET_LENGTH: Final = 16
REMOVED_POLICY_KEYS: Final = {
    "default_branch": "default_branch was removed; the governor uses the repository's default "
    "branch from GitHub's settings",
}


class ConfigError(Exception):
    """Settings are missing or invalid; the message names the variable and what to do."""


class Mode(StrEnum):
    ENFORCE = "enforce"
    """Dispatch on ALLOW, post failing statuses on HOLD."""
    SHADOW = "shadow"
    """Decide and record, post neutral statuses, dispatch nothing: for trying a policy out."""


# --------------------------------------------------------------------------------------
# App settings
# --------------------------------------------------------------------------------------


class AppSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GOVERNOR_", extra="ignore", frozen=True)

    store_url: str = Field(
        description="Where state lives: file:///path, gs://bucket/prefix or s3://bucket/prefix.",
    )
    webhook_secret: SecretStr = Field(
        description="The GitHub App's webhook secret; deliveries not signed with it get 401.",
    )
    webhook_secret_previous: SecretStr | None = Field(
        default=None,
        description="The secret being rotated out: deliveries signed with it are accepted too "
        "until it is removed (see docs/github-app.md, rotating the secret).",
    )
    write_timeout_s: float = Field(
        default=DEFAULT_WRITE_TIMEOUT_S,
        gt=0,
        le=600,
        description="How long a write waits for other governor writes before giving up.",
    )
    github_app_id: str | None = Field(default=None, description="The App's numeric id.")
    github_client_id: str | None = Field(default=None, description="The App's client id.")
    github_private_key: SecretStr | None = Field(
        default=None, description="The App's private key (PEM), as a value."
    )
    github_private_key_path: Path | None = Field(
        default=None, description="The App's private key (PEM), as a file path."
    )
    github_app_slug: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="The App's slug (its bot user is <slug>[bot]); looked up from GitHub if unset.",
    )
    github_api_url: str = Field(
        default="https://api.github.com",
        description="GitHub's REST API root; for GitHub Enterprise Server https://HOST/api/v3.",
    )
    status_context: str = Field(
        default="release-governor", min_length=1, description="Commit status context."
    )
    public_url: str | None = Field(
        default=None, description="Base URL of the decision page function, for status links."
    )
    link_secret: SecretStr | None = Field(
        default=None, description="Key that signs decision page links."
    )
    mode: Mode = Field(default=Mode.ENFORCE, description="enforce or shadow, for every repo.")
    delivery_lease_s: float = Field(
        default=120,
        gt=0,
        le=3600,
        description="How long a delivery being processed is reserved for its instance; after "
        "that another instance may take it over (and a dispatch left without a run is retried).",
    )
    github_timeout_s: float = Field(
        default=10, gt=0, le=120, description="Timeout of one request to GitHub."
    )

    @field_validator("webhook_secret", "webhook_secret_previous", "link_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"is shorter than {MIN_SECRET_LENGTH} characters; use a long random value "
                "(e.g. `openssl rand -hex 32`)"
            )
        return value

    def webhook_secrets(self) -> tuple[bytes, ...]:
        """The secrets a delivery may be signed with: the current one, then the previous."""
        secrets = [self.webhook_secret, self.webhook_secret_previous]
        return tuple(s.get_secret_value().encode() for s in secrets if s is not None)

    @model_validator(mode="after")
    def _one_private_key(self) -> AppSettings:
        if self.github_private_key is not None and self.github_private_key_path is not None:
            raise ValueError(
                "set GOVERNOR_GITHUB_PRIVATE_KEY or GOVERNOR_GITHUB_PRIVATE_KEY_PATH, not both"
            )
        return self

    def app_id(self) -> str:
        if not self.github_app_id:
            raise ConfigError("no GitHub App id: set GOVERNOR_GITHUB_APP_ID")
        return self.github_app_id

    def private_key_pem(self) -> str:
        """The App's private key, from the value or the file; ConfigError if neither."""
        if self.github_private_key is not None:
            return self.github_private_key.get_secret_value()
        if self.github_private_key_path is not None:
            try:
                return self.github_private_key_path.read_text()
            except OSError as exc:
                raise ConfigError(
                    f"GOVERNOR_GITHUB_PRIVATE_KEY_PATH: cannot read the key file: {exc.strerror}"
                ) from None
        raise ConfigError(
            "no GitHub App private key: set GOVERNOR_GITHUB_PRIVATE_KEY_PATH (or _KEY)"
        )


def load_settings() -> AppSettings:
    """Settings from the environment, or ConfigError saying which variable to fix."""
    try:
        return AppSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"GOVERNOR_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            if err["loc"]
            else err["msg"]
            for err in exc.errors()
        )
        raise ConfigError(f"invalid or missing settings: {problems}") from None


# --------------------------------------------------------------------------------------
# Repository policy (.github/release-governor.yml)
# --------------------------------------------------------------------------------------

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
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


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


class DegradedPolicy(_Strict):
    issue_label: str | None = Field(
        default="production-degraded",
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
    approval: ApprovalPolicy = ApprovalPolicy()
    require_approval_for_first_deploy: bool = False
    degraded: DegradedPolicy = DegradedPolicy()
    freeze: FreezePolicy = FreezePolicy()
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

    No file means the repository has not opted in: the governor leaves it alone.
    """
    if text is None:
        return None
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
