"""Serve a function from functions/main.py on the functions-framework emulator, on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.emulators import free_port, wait_for_http

REPO_ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def serve_function(target: str, env: dict[str, str]) -> Iterator[str]:
    """Yield the base URL of `target` served by the functions-framework CLI in a subprocess."""
    port = free_port()
    with tempfile.NamedTemporaryFile(prefix=f"{target}-", suffix=".log", delete=False) as log_file:
        log = Path(log_file.name)
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("functions-framework")),
                "--target",
                target,
                "--source",
                str(REPO_ROOT / "functions" / "main.py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=REPO_ROOT,
        )
    url = f"http://127.0.0.1:{port}"
    serve_function.process = process  # type: ignore[attr-defined]
    try:
        wait_for_http(url + "/", process, log)
        yield url
    finally:
        process.terminate()  # the gunicorn master stops its workers
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # anything of its group left behind
        serve_function.last_log = log.read_text()  # type: ignore[attr-defined]
        log.unlink(missing_ok=True)


def kill_hard(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the whole function instance, as a crashed or evicted instance dies."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
