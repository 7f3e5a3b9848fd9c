"""The flows in-process against the fake GitHub: the App's GitHub port and the Context."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from governor.flows.context import Context
from governor.github.api import GitHubApp, RepoApi
from governor.ledger import DEFAULT_LEASE, Ledger
from governor.settings import AppSettings
from governor.store import ObjectStore, open_store

from tests.support.e2e import APP_ID, SECRET
from tests.support.fake_github import FakeGitHub
from tests.support.keys import rsa_key_pair


@dataclass(frozen=True)
class Port:
    """The GitHub port of functions/main.py, with the bot login known up front."""

    app: GitHubApp
    bot: str

    def repo(self, installation_id: int, full_name: str) -> RepoApi:
        return self.app.repo(installation_id, full_name)

    def bot_login(self) -> str:
        return self.bot


def app_for(fake: FakeGitHub, *, timeout_s: float = 10) -> GitHubApp:
    """The App's client of `fake`, signing with the key the fake knows."""
    return GitHubApp(fake.url, APP_ID, rsa_key_pair()[0], timeout_s=timeout_s)


def in_process(
    fake: FakeGitHub,
    store_url: str,
    now: list[datetime] | None = None,
    *,
    app: GitHubApp | None = None,
    store: ObjectStore | None = None,
    settings: AppSettings | None = None,
    lease: timedelta = DEFAULT_LEASE,
) -> Context:
    """The flows' Context on `store_url` (through `store`, a wrapper of it, if given) and
    the fake (through `app`, or a new client). The clock is `now[0]`, which the test
    moves, or the real one if `now` is None."""
    if settings is None:
        settings = AppSettings(store_url=store_url, webhook_secret=SECRET)
    return Context(
        settings,
        Ledger(open_store(store_url) if store is None else store),
        Port(app_for(fake) if app is None else app, fake.bot_login),
        clock=_clock(now),
        lease=lease,
    )


def _clock(now: list[datetime] | None) -> Callable[[], datetime]:
    if now is None:
        return lambda: datetime.now(UTC)
    cell = now
    return lambda: cell[0]
