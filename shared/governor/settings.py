"""The app's settings, from GOVERNOR_* environment variables (pydantic-settings).

Strict: a missing or invalid variable is a ConfigError that names it. Secrets must be at
least 16 characters; the webhook secret can be rotated (a previous one accepted too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from governor.policy import Mode
from governor.store.base import DEFAULT_WRITE_TIMEOUT_S

MIN_SECRET_LENGTH: Final = 16


class ConfigError(Exception):
    """Settings are missing or invalid; the message names the variable and what to do."""


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
    link_ttl_days: int = Field(
        default=30,
        ge=1,
        le=365,
        description="How long a decision page link stays valid; each status carries a fresh one.",
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
    webhook_deadline_s: float = Field(
        default=8,
        gt=0,
        le=600,
        description="Time budget of one webhook request, GitHub calls and store waits included; "
        "past it the request answers 503 and reconcile redelivers it. GitHub.com gives up on a "
        "webhook after 10 s; GitHub Enterprise Server may wait longer.",
    )
    reconcile_budget_s: float = Field(
        default=240,
        gt=0,
        le=3600,
        description="Time budget of one reconcile run; keep it under the function's timeout "
        "(infra/ gives reconcile 300 s). A run stops before it and resumes from its cursor.",
    )
    reconcile_max_repos: int = Field(
        default=500,
        ge=1,
        le=100_000,
        description="Repositories one reconcile run visits (round-robin across runs).",
    )
    reconcile_max_redeliveries: int = Field(
        default=20, ge=0, le=1000, description="Webhook redeliveries one reconcile run asks for."
    )
    retention_days: int = Field(
        default=7,
        ge=4,
        le=3650,
        description="Delivery claims and run records are kept this long (at least 4 days: "
        "longer than GitHub's 3-day redelivery window). GCS and S3 lifecycle rules must match.",
    )
    audit_retention_days: int = Field(
        default=400,
        ge=4,
        le=36500,
        description="Decision records (the evaluations `governor explain` and `simulate` "
        "read) are kept this long after their last change.",
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
