"""`make demo` runs the same script: every step checked, and everything stopped after it.

The script runs as `make demo` runs it, in a subprocess whose stdout is a pipe (not a
terminal), so it plays the loop, stops what it started and exits with its verdict.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
URL_LINE = re.compile(r"^\s+(sandbox|github_webhook|reconcile|decision_page|health)\s+(http\S+)")

pytestmark = pytest.mark.slow


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.support.demo", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _urls(lines: list[str]) -> dict[str, str]:
    return {m[1]: m[2] for line in lines if (m := URL_LINE.match(line))}


def _assert_all_stopped(urls: dict[str, str]) -> None:
    assert set(urls) == {"sandbox", "github_webhook", "reconcile", "decision_page", "health"}
    for name, url in urls.items():
        port = urlparse(url).port
        assert port is not None
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) != 0:
                    break
            assert time.monotonic() < deadline, f"{name} still answers on {url}"
            time.sleep(0.1)


def test_demo_plays_every_step_and_stops_everything() -> None:
    done = _demo()
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    lines = out.splitlines()

    def step(n: int) -> str:
        start = lines.index(next(line for line in lines if line.startswith(f"{n}. ")))
        rest = lines[start + 1 :]
        end = next((i for i, line in enumerate(rest) if re.match(r"^\d\. |^$", line)), len(rest))
        return "\n".join(rest[:end])

    low, high, failing, storm = (step(n) for n in (1, 2, 3, 4))
    assert "[FAIL]" not in out
    for n, text in enumerate((low, high, failing, storm), start=1):
        assert f"[ok  ] step {n}:" in text
    # 1. LOW -> dispatched -> deployed, with a decision page link that opened
    assert "<- 202 decided: ALLOW allow_low" in low
    assert re.search(r"details http://127\.0\.0\.1:\d+/\?repo=4242&sha=[0-9a-f]{40}&exp=", low)
    assert "opens the decision page: GOING OUT (200)" in low
    assert "dispatched deploy.yml on main" in low and "<- 202 deployed" in low
    # 2. HIGH -> held -> approved by label -> dispatched
    assert "<- 202 decided: HOLD high_risk_no_approval" in high
    assert "add label 'deploy-approved'" in high
    assert "put deploy-approved on #12" in high
    assert "<- 202 approved by mona: ALLOW allow_high_approved" in high
    assert "dispatched deploy.yml" in high and "<- 202 deployed" in high
    # 3. failing deploy -> failure issue -> cooldown -> resumed
    assert "<- 202 deploy_failed" in failing
    assert re.search(r'opened issue #\d+ "Deploy failure: [0-9a-f]{7}"', failing)
    assert "<- 202 decided: HOLD cooldown" in failing
    assert "pretending 31 minutes passed" in failing
    assert "<- 200 reconcile: hold_resumed 1" in failing
    assert "dispatched 2 time(s) (GitHub: 2)" in failing and "<- 202 deployed" in failing
    # 4. a duplicate storm -> one dispatch
    assert "1 x decided: ALLOW allow_low" in storm
    assert "decided once (1)" in storm and "dispatched 1 time(s) (GitHub: 1)" in storm
    assert "All 4 steps went as described." in out
    assert "held: nothing" in out  # governor status at the end
    assert "PRIVATE KEY" not in out + done.stderr
    # Without a terminal: nothing left running, the store removed.
    assert "Everything is still running" not in out
    _assert_all_stopped(_urls(lines))
    store = next(line.split()[-1] for line in lines if line.strip().startswith("store "))
    assert not Path(urlparse(store).path).exists()


def test_a_step_that_goes_wrong_fails_the_demo() -> None:
    """The sandbox refuses every dispatch: step 1 fails, the rest is skipped, exit 1."""
    done = _demo("--json", "--refuse", "actions/create-workflow-dispatch")
    records = [json.loads(line) for line in done.stdout.splitlines()]
    notes = [r["text"] for r in records if r["kind"] == "note"]
    kept = next((n for n in notes if "logs are kept in" in n), None)
    if kept:
        shutil.rmtree(kept.split()[-1], ignore_errors=True)

    assert done.returncode == 1, done.stdout + done.stderr
    checks = [r for r in records if r["kind"] == "check"]
    assert checks[-1]["ok"] is False and checks[-1]["step"] == 1, checks
    assert [r["step"] for r in records if r["kind"] == "step"] == [1]
    assert any("refused a dispatch: HTTP 422" in r.get("what", "") for r in records)
    assert "The remaining steps are skipped." in "\n".join(notes)
    _assert_all_stopped(_urls(notes))
