"""Shared fixtures: real storage servers on loopback and a store per backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from governor.store import ObjectStore, open_store

from tests.support import emulators

BACKENDS = ["local", "gcs", "s3"]
BUCKET = "governor-test"


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    with emulators.fake_gcs_server() as url:
        emulators.create_gcs_bucket(url, BUCKET)
        with _environ(STORAGE_EMULATOR_HOST=url):
            yield url


@pytest.fixture(scope="session")
def s3_emulator() -> Iterator[str]:
    with emulators.moto_s3_server() as url, _environ(AWS_ENDPOINT_URL=url, **emulators.S3_ENV):
        emulators.create_s3_bucket(url, BUCKET)
        yield url


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
