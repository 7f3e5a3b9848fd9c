"""Shared fixtures: real storage servers on loopback and a store per backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from governor.github.api import GitHubApp
from governor.store import ObjectStore, open_store

from tests.support import emulators, replay_check
from tests.support.cli_world import Cli
from tests.support.e2e import APP_ID, function_env, new_repo
from tests.support.fake_github import FakeGitHub
from tests.support.functions_server import serve_function
from tests.support.governed import Governed
from tests.support.keys import rsa_key_pair
from tests.support.s3_serial_proxy import SerialProxy, serial_proxy
from tests.support.world import app_for

BACKENDS = ["local", "gcs", "s3"]
BUCKET = "governor-test"


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    with emulators.fake_gcs_server() as url:
        emulators.create_gcs_bucket(url, BUCKET)
        with _environ(STORAGE_EMULATOR_HOST=url):
            yield url


@pytest.fixture(scope="session")
def s3_proxy() -> Iterator[SerialProxy]:
    """moto's S3 server, reachable only through the proxy that makes conditional PUTs atomic.

    Why: moto checks If-Match / If-None-Match and then writes, without a lock, so two
    concurrent conditional PUTs on one ETag can both succeed where real S3 refuses one.
    Tests with concurrent writers (the 16-process counter, the 32-process intent race,
    the 20-process delivery claim) then lose updates for a reason real S3 does not have:
    799 of 801 on a busy machine. Behind the proxy, a lost update can only be the
    governor's. Every S3 test goes through it, so none passes or fails by moto's luck.
    tests/test_gate_invariants.py::test_conditional_puts_through_the_proxy_never_lose_an_update
    shows the proxy is needed and sufficient; tests/support/s3_serial_proxy.py says how.
    """
    with emulators.moto_s3_server() as moto, serial_proxy(moto) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def s3_emulator(s3_proxy: SerialProxy) -> Iterator[str]:
    """The S3 endpoint every S3 test (and worker process) uses: the proxy's URL, not moto's."""
    with _environ(AWS_ENDPOINT_URL=s3_proxy.url, **emulators.S3_ENV):
        emulators.create_s3_bucket(s3_proxy.url, BUCKET)
        yield s3_proxy.url


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store on each backend (spawned worker processes inherit the env)."""
    backend = request.param
    if backend == "local":
        return (tmp_path / "store").as_uri()
    request.getfixturevalue(f"{backend}_emulator")
    scheme = {"gcs": "gs", "s3": "s3"}[backend]
    return f"{scheme}://{BUCKET}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(store_url: str) -> ObjectStore:
    return open_store(store_url)


# -- every stored evaluation decided again ------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _replay_tally() -> Iterator[None]:
    """At the end: the session replayed enough evaluations for the check to mean something."""
    yield
    replay_check.check_tally()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if replay_check.TALLY.tests or replay_check.TALLY.fixtures:
        terminalreporter.write_line(replay_check.TALLY.line())


@pytest.fixture(autouse=True)
def _replay_stored_evaluations(_replay_tally: None) -> Iterator[None]:
    """After each test that made governed repositories (`new_repo`): every evaluation in
    their decision records is decided again and must reproduce exactly
    (tests/support/replay_check.py)."""
    yield
    replay_check.check()


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    """A fixture that outlives a test (module, session, ...) owns the governed
    repositories made while it is set up: they are replayed when it is torn down, after
    every test that used them (before its own teardown, so its servers and store are
    still there), not after the test that happened to set it up."""
    if fixturedef.scope == "function":
        return (yield)
    with replay_check.made_by_fixture() as made:
        value = yield
    if made:
        name = f"{fixturedef.scope}-scoped {fixturedef.argname}"
        fixturedef.addfinalizer(lambda: replay_check.check_fixture(made, name))
    return value


# -- end to end: the fake GitHub and the webhook function on loopback ----------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGitHub]:
    _private, public = rsa_key_pair()
    with FakeGitHub(app_id=APP_ID, public_key_pem=public) as github:
        yield github


@pytest.fixture(scope="module")
def fake_app(fake: FakeGitHub) -> GitHubApp:
    """The App's client of `fake`, one per module: its installation tokens are cached."""
    return app_for(fake)


@pytest.fixture(scope="module")
def gcs_store_url(gcs_emulator: str) -> str:
    return f"gs://{BUCKET}/e2e-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def gcs_webhook(fake: FakeGitHub, gcs_store_url: str) -> Iterator[str]:
    with serve_function("github_webhook", function_env(fake, gcs_store_url)) as server:
        yield server.url


@pytest.fixture(scope="module")
def local_store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tmp_path_factory.mktemp("e2e-store").as_uri()


@pytest.fixture(scope="module")
def local_webhook(fake: FakeGitHub, local_store_url: str) -> Iterator[str]:
    with serve_function("github_webhook", function_env(fake, local_store_url)) as server:
        yield server.url


@pytest.fixture
def app_env(
    fake: FakeGitHub, local_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The App's settings, as the functions have them, for the in-process commands."""
    env = function_env(fake, local_store_url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def local_gov(
    fake: FakeGitHub, local_store_url: str, local_webhook: str, app_env: dict[str, str]
) -> Iterator[Governed]:
    """A new governed repository on the fake, served by the webhook on the local store: the
    store of the in-process commands (`app_env`). The CLI tests' `gov`."""
    governed = new_repo(fake, local_store_url, local_webhook)
    yield governed
    assert fake.violations == [], "the governor made a request GitHub's description does not have"


@pytest.fixture
def cli(app_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


@pytest.fixture
def gov(fake: FakeGitHub, gcs_store_url: str, gcs_webhook: str) -> Iterator[Governed]:
    """A new governed repository on the fake, served by the webhook on fake-gcs-server."""
    governed = new_repo(fake, gcs_store_url, gcs_webhook)
    yield governed
    assert fake.violations == [], "the governor made a request GitHub's description does not have"


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for a block and put the old values back after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
