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
from dataclasses import dataclass
from pathlib import Path

from tests.support.emulators import free_port, wait_for_http

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log: str = ""
    """What the instance printed, filled in when it stops."""


@contextmanager
def serve_function(target: str, env: dict[str, str]) -> Iterator[Served]:
    """Serve `target` with the functions-framework CLI in a subprocess, on loopback."""
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
            start_new_session=True,  # its own process group: gunicorn master and workers
        )
    url = f"http://127.0.0.1:{port}"
    served = Served(url, process)
    try:
        wait_for_http(url + "/", process, log)
        yield served
    finally:
        process.terminate()  # the gunicorn master stops its workers
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # anything of its group left behind
        served.log = log.read_text()
        log.unlink(missing_ok=True)


def kill_hard(served: Served) -> None:
    """SIGKILL the whole function instance, as a crashed or evicted instance dies."""
    if served.process.poll() is not None:
        raise AssertionError(f"instance already exited with {served.process.returncode}")
    os.killpg(served.process.pid, signal.SIGKILL)
    served.process.wait()
