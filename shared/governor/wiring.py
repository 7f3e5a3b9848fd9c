"""Settings in, a working governor out: the store, the GitHub App and the flows' context.

The HTTP functions and the `governor` command are wired the same way, here.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

from governor.flows.context import Context
from governor.github.api import GitHubApp, RepoApi
from governor.ledger import Ledger
from governor.settings import AppSettings
from governor.store import ObjectStore, open_store


class Governor:
    """Everything built lazily from settings: an event that needs no GitHub works without
    App credentials, and the App client is built once per process."""

    def __init__(self, settings: AppSettings, *, write_timeout_s: float | None = None) -> None:
        self.settings = settings
        self._write_timeout_s = write_timeout_s or settings.write_timeout_s

    @functools.cached_property
    def store(self) -> ObjectStore:
        return open_store(self.settings.store_url, write_timeout_s=self._write_timeout_s)

    @functools.cached_property
    def app(self) -> GitHubApp:
        settings = self.settings
        return GitHubApp(
            settings.github_api_url,
            settings.app_id(),
            settings.private_key_pem(),
            timeout_s=settings.github_timeout_s,
        )

    @functools.cached_property
    def context(self) -> Context:
        return Context(
            self.settings,
            Ledger(self.store),
            _AppGitHub(self),
            clock=lambda: datetime.now(UTC),
            lease=timedelta(seconds=self.settings.delivery_lease_s),
        )


class _AppGitHub:
    """The flows' GitHub port on the App, built on first use."""

    def __init__(self, governor: Governor) -> None:
        self._governor = governor

    def repo(self, installation_id: int, full_name: str) -> RepoApi:
        return self._governor.app.repo(installation_id, full_name)

    def bot_login(self) -> str:
        slug = self._governor.settings.github_app_slug or self._governor.app.app_slug()
        return f"{slug}[bot]"
