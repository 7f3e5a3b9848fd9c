"""Application settings, read from GOVERNOR_* environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from governor.store.base import DEFAULT_WRITE_TIMEOUT_S


class ConfigError(Exception):
    """Settings are missing or invalid; the message names the variable and what to do."""


class AppSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GOVERNOR_", extra="ignore", frozen=True)

    store_url: str = Field(
        description="Where state lives: file:///path, gs://bucket/prefix or s3://bucket/prefix.",
    )
    write_timeout_s: float = Field(
        default=DEFAULT_WRITE_TIMEOUT_S,
        gt=0,
        le=600,
        description="How long a write waits for other governor writes before giving up.",
    )
    webhook_secret: SecretStr = Field(
        description="The GitHub App's webhook secret; deliveries not signed with it get 401.",
    )


def load_settings() -> AppSettings:
    """Settings from the environment, or ConfigError saying which variable to fix."""
    try:
        return AppSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"GOVERNOR_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid or missing settings: {problems}") from None
