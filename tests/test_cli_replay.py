"""`governor replay`: a payload signed with the webhook secret and POSTed with GitHub's
headers to the real `github_webhook` function (functions-framework, on loopback), which
checks the signature before anything else: a ping, and a real `workflow_run` delivery
that the function decides and dispatches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from governor.cli import main

from tests.support.e2e import SECRET, deployed_base, new_repo
from tests.support.emulators import free_port
from tests.support.fake_github import FakeGitHub

GOVERNOR = str(Path(sys.executable).with_name("governor"))
PING = {"zen": "Keep it logically awesome.", "hook_id": 1, "hook": {"type": "App"}}


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("GOVERNOR_WEBHOOK_SECRET", SECRET)
    return SECRET


def test_a_ping_is_signed_so_the_function_accepts_it(
    local_webhook: str, secret: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = tmp_path / "ping.json"
    payload.write_text(json.dumps(PING, indent=2) + "\n")  # sent as written, not re-encoded

    code = main(
        ["--json", "replay", str(payload), "--event", "ping", "--url", local_webhook,
         "--delivery", "replay-guid-1"]
    )  # fmt: skip

    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    assert result["status"] == 200 and result["ok"] is True
    assert result["event"] == "ping" and result["delivery"] == "replay-guid-1"
    assert json.loads(result["body"]) == {"result": "pong", "delivery": "replay-guid-1"}
    assert result["signature"].startswith("sha256=") and result["url"] == local_webhook

    code = main(["replay", str(payload), "--event", "ping", "--url", local_webhook])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith(f"POST {local_webhook}  event ping  delivery ")
    assert out[1] == "HTTP 200 (application/json)"
    assert json.loads(out[2])["result"] == "pong"


def test_a_wrong_secret_is_refused_and_exits_1(
    local_webhook: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("GOVERNOR_WEBHOOK_SECRET", "not-the-secret-at-all")
    payload = tmp_path / "ping.json"
    payload.write_text(json.dumps(PING))

    code = main(["--json", "replay", str(payload), "--event", "ping", "--url", local_webhook])

    result = json.loads(capsys.readouterr().out)
    assert code == 1 and result["status"] == 401 and result["ok"] is False


def test_usage_and_connection_errors(
    secret: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    payload = tmp_path / "ping.json"
    payload.write_text(json.dumps(PING))
    closed = f"http://127.0.0.1:{free_port()}/"
    assert main(["replay", str(payload), "--event", "ping", "--url", closed]) == 1
    assert f"POST {closed} failed" in capsys.readouterr().err
    assert main(["replay", str(payload), "--event", "Ping!", "--url", closed]) == 2
    assert "is not an event name" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "none.json"), "--event", "ping", "--url", closed]) == 1
    assert "cannot read" in capsys.readouterr().err
    monkeypatch.delenv("GOVERNOR_WEBHOOK_SECRET")
    assert main(["replay", str(payload), "--event", "ping", "--url", closed]) == 2
    assert "GOVERNOR_WEBHOOK_SECRET is not set" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["replay", str(payload), "--url", closed])  # --event is required
    assert usage.value.code == 2


def test_a_real_verification_replayed_by_the_installed_command_is_decided_and_dispatched(
    fake: FakeGitHub, local_store_url: str, local_webhook: str, tmp_path: Path
) -> None:
    gov = new_repo(fake, local_store_url, local_webhook)
    deployed_base(gov)
    sha = gov.commit("replayed", ["src/app.py"])
    payload = tmp_path / "workflow_run.json"
    payload.write_text(json.dumps(gov.verified(sha)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNOR_")}
    env |= {"GOVERNOR_WEBHOOK_SECRET": SECRET, "GOVERNOR_STORE_URL": local_store_url}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [GOVERNOR, *args], capture_output=True, text=True, env=env, check=False
        )

    replayed = run("replay", str(payload), "--event", "workflow_run", "--url", local_webhook)

    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert replayed.stdout.splitlines()[1] == "HTTP 202 (application/json)"  # 2xx: exit 0
    answer = json.loads(replayed.stdout.splitlines()[2])
    assert (answer["result"], answer["decision"], answer["sha"]) == ("decided", "ALLOW", sha)
    assert [d["inputs"]["sha"] for d in gov.dispatches()] == [sha]
    # What the replay did is in the store: status shows the deploy in flight.
    status = run("--json", "status", gov.repo.full_name, "--sha", sha)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["sha"]["state"] == "in_flight"
    helped = run("replay", "--help")
    assert helped.returncode == 0 and "Exit status" in helped.stdout
    assert fake.violations == []
