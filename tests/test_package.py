"""The function source zip installs in a fresh venv and serves each function.

This is what Cloud Functions does with it: unpack, `pip install -r requirements.txt`,
import main.py from the root and serve one `--target`. The venv is new and empty (pip's
cache makes the install take about 40 s here), so `governor` can only come from the zip.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import uuid
import venv
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from governor.events import signature_for

from tests.support.emulators import free_port, wait_for_http

REPO_ROOT = Path(__file__).resolve().parents[1]
PING = REPO_ROOT / "tests" / "fixtures" / "github" / "webhooks" / "ping.event.0.json"
SECRET = "package-test-" + uuid.uuid4().hex

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Unpacked:
    source: Path
    """The unpacked zip: main.py at its root."""
    bin: Path
    """The fresh venv's bin directory."""
    names: frozenset[str]


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Unpacked:
    root = tmp_path_factory.mktemp("package")
    zip_path = root / "function-source.zip"
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "package.py"), str(zip_path)],
        check=True,
        capture_output=True,
    )
    source = root / "source"
    with zipfile.ZipFile(zip_path) as archive:
        names = frozenset(archive.namelist())
        archive.extractall(source)
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    subprocess.run(
        [
            str(env_dir / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(source / "requirements.txt"),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return Unpacked(source, env_dir / "bin", names)


def test_zip_layout_is_what_cloud_functions_expects(unpacked: Unpacked) -> None:
    assert {"main.py", "requirements.txt", "governor/__init__.py"} <= unpacked.names
    assert (unpacked.source / "main.py").read_bytes() == (
        REPO_ROOT / "functions" / "main.py"
    ).read_bytes()
    assert (unpacked.source / "requirements.txt").read_bytes() == (
        REPO_ROOT / "requirements.txt"
    ).read_bytes()
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in unpacked.names)


def test_zip_is_reproducible(tmp_path: Path) -> None:
    zips = [tmp_path / "a.zip", tmp_path / "b.zip"]
    for path in zips:
        subprocess.run(
            [sys.executable, str(REPO_ROOT / "scripts" / "package.py"), str(path)], check=True
        )
    assert zips[0].read_bytes() == zips[1].read_bytes()


@contextlib.contextmanager
def serve(unpacked: Unpacked, target: str, state: Path) -> Iterator[str]:
    """Serve `target` from the unpacked zip with the fresh venv's functions-framework."""
    port = free_port()
    env = {
        "PATH": f"{unpacked.bin}{os.pathsep}/usr/bin:/bin",
        "HOME": str(state),
        "GOVERNOR_STORE_URL": state.as_uri(),
        "GOVERNOR_WEBHOOK_SECRET": SECRET,
    }
    with tempfile.NamedTemporaryFile(prefix=f"{target}-", suffix=".log", delete=False) as log_file:
        log = Path(log_file.name)
        process = subprocess.Popen(
            [
                str(unpacked.bin / "functions-framework"),
                "--target",
                target,
                "--source",
                "main.py",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,  # nothing of the project's environment: no PYTHONPATH, no venv
            cwd=unpacked.source,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(url, process, log, timeout_s=120)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        log.unlink(missing_ok=True)


def _signed_ping(url: str) -> None:
    body = PING.read_bytes()
    response = httpx.post(
        url,
        content=body,
        headers={
            "content-type": "application/json",
            "x-github-event": "ping",
            "x-github-delivery": str(uuid.uuid4()),
            "x-hub-signature-256": signature_for(SECRET.encode(), body),
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "pong"


def _healthy(url: str) -> None:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"


def _unsigned_page_is_not_found(url: str) -> None:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 404, response.text


def _reconcile_without_app_credentials(url: str) -> None:
    """Served and wired: with no App id configured it says so (503), nothing else."""
    response = httpx.post(url, timeout=60)
    assert response.status_code == 503, response.text
    assert "not configured" in response.json()["error"]


# One line per function in functions/main.py: its target and a request it must answer.
TARGETS: dict[str, Callable[[str], None]] = {
    "github_webhook": _signed_ping,
    "health": _healthy,
    "decision_page": _unsigned_page_is_not_found,
    "reconcile": _reconcile_without_app_credentials,
}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_function_serves_from_the_zip(unpacked: Unpacked, target: str, tmp_path: Path) -> None:
    with serve(unpacked, target, tmp_path) as url:
        TARGETS[target](url)
