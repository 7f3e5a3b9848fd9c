"""The `governor` command keeps what docs/cli.md and `--help` promise: exit codes, REPO
as `owner/name` (any case) or id for every command, `--json` anywhere, the identity
recorded on S3.

The commands run in-process (`governor.cli.main`) and as the installed `governor`,
against the real local store (and moto's S3 server for the S3 identity); GitHub is the
fake; webhooks go to the `github_webhook` function on loopback (conftest's
`local_webhook`). Write contention is real: another process holds the local store's
writer lock (the `flock` every local write takes) while a command runs.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import pytest
from governor import cli as cli_module
from governor.cli import main
from governor.flows import approval as approval_flow
from governor.ledger import Ledger, state_key
from governor.state import Approval, new_state
from governor.store import ABSENT, credentials_identity, open_store
from governor.store.local import LOCK_NAME
from governor.store.s3 import S3Store

from tests.conftest import BUCKET
from tests.support.cli_world import Cli
from tests.support.e2e import deployed_base
from tests.support.fake_github import Call
from tests.support.governed import Governed
from tests.support.s3_serial_proxy import SerialProxy
from tests.test_cli_operate import (
    GOVERNOR,
    WAIT_S,
    dispatch_calls,
    local_identity,
    production_b_after_a,
    run_of,
    snapshot,
    subprocess_env,
)

MOTO_ARN = "arn:aws:sts::123456789012:user/moto"
"""What moto's STS answers GetCallerIdentity with, for any credentials."""
CONTENTION_S = "0.3"
"""GOVERNOR_WRITE_TIMEOUT_S while the lock is held: the command gives up quickly."""


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def gov(local_gov: Governed) -> Governed:
    """conftest's `local_gov` (its `gov` is on fake-gcs-server): the commands' store."""
    return local_gov


def github_writes(gov: Governed) -> list[Call]:
    """Every request that changes something of the repository at GitHub (statuses,
    dispatches, issues, ...): the installation token aside, what 'posted' means."""
    return [
        c
        for c in gov.fake.calls
        if c.method in {"POST", "PUT", "PATCH", "DELETE"}
        and f"/repos/{gov.repo.full_name}/" in c.path
    ]


@contextmanager
def store_lock_held(store_url: str) -> Iterator[None]:
    """Another process holds the local store's writer lock for the block, as a governor
    in the middle of a write does (`flock` on `<root>/.governor.lock`)."""
    lock = Path(unquote(urlsplit(store_url).path)) / LOCK_NAME
    code = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "locked"
        fd = os.open(lock, os.O_RDWR)  # the lock is really taken: this process cannot get it
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        yield
    finally:
        holder.stdin.close()  # the holder exits, and the kernel releases its lock
        holder.wait(timeout=WAIT_S)


def raw_files(root: Path) -> dict[str, bytes]:
    """Every file of a local store as bytes (the lock file aside): read without parsing,
    so a broken record is compared too."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != LOCK_NAME
    }


def helped(*command: str) -> str:
    done = subprocess.run(
        [GOVERNOR, *command, "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.split())  # argparse wraps lines


# -- 1. approve of the SHA in production -------------------------------------------------


def test_approve_of_the_sha_in_production_exits_0_and_writes_and_posts_nothing(
    gov: Governed, cli: Cli
) -> None:
    _a, b = production_b_after_a(gov)
    before, posted = snapshot(gov.store_url), len(github_writes(gov))

    code, out, err = cli("approve", gov.repo.full_name, b, "--reason", "ship it", "--by", "al")

    assert code == 0, err
    assert (out["result"], out["outcome"], out["decision_reason"]) == ("in_production", None, None)
    assert out["detail"] == f"{b[:7]} is in production already: nothing to approve"
    assert out["dispatch"] is None
    assert snapshot(gov.store_url) == before, "no approval recorded for a SHA in production"
    assert gov.state().approvals_for(b) == ()
    assert len(github_writes(gov)) == posted, "no status, no dispatch"

    # As text, by id and a prefix: it says so and does not claim an approval.
    code, text, err = cli.text("approve", str(gov.repo.repo_id), b[:8], "--reason", "x")
    assert code == 0, err
    assert text.strip() == (
        f"{gov.repo.full_name} {b}: {b[:7]} is in production already: nothing to approve; "
        "no approval recorded"
    )
    assert snapshot(gov.store_url) == before
    assert len(github_writes(gov)) == posted


def test_an_approval_is_dropped_in_the_write_when_its_sha_reached_production_meanwhile() -> None:
    """`by_operator` reads the state first, then writes through `_unless_in_production`: a
    SHA that reached production between that read and the write gets no approval."""
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    sha, other = "a" * 40, "b" * 40
    approval = Approval(sha=sha, by="op", at=now, via="cli", reason="ship it")
    write = approval_flow._unless_in_production(approval, now)

    deployed = new_state(1, "octo/app").model_copy(update={"production_sha": sha})
    assert write(deployed) is deployed  # unchanged: the ledger writes nothing

    elsewhere = new_state(1, "octo/app").model_copy(update={"production_sha": other})
    assert write(elsewhere).approvals_for(sha) == (approval,)


# -- 2. exit 75: another governor write in progress -------------------------------------


WRITERS = ["approve", "rollback", "freeze", "freeze-all", "degraded"]


def _writer_args(writer: str, gov: Governed, held: str) -> list[str]:
    name, who = gov.repo.full_name, ["--reason", "INC-75", "--by", "op"]
    return {
        "approve": ["approve", name, held, *who],
        "rollback": ["rollback", name, *who],
        "freeze": ["freeze", name, "on", *who],
        "freeze-all": ["freeze", "--all", "on", *who],
        "degraded": ["degraded", name, "on", *who],
    }[writer]


@pytest.mark.parametrize("writer", WRITERS)
def test_a_write_that_cannot_get_the_store_exits_75_and_changes_nothing(
    gov: Governed, cli: Cli, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    _a, _b = production_b_after_a(gov)
    held = gov.commit("held", ["infra/main.tf"])  # HIGH: an approval would dispatch it
    args = _writer_args(writer, gov, held)
    monkeypatch.setenv("GOVERNOR_WRITE_TIMEOUT_S", CONTENTION_S)
    before, posted = snapshot(gov.store_url), len(github_writes(gov))
    try:
        with store_lock_held(gov.store_url):
            code, out, err = cli(*args)

        assert code == 75, (out, err)
        assert out is None
        assert "another governor write is in progress" in err
        assert f"within {CONTENTION_S} s (GOVERNOR_WRITE_TIMEOUT_S)" in err
        assert "nothing was changed, retry" in err
        assert snapshot(gov.store_url) == before
        assert len(github_writes(gov)) == posted, "nothing dispatched or posted"

        # The lock released, the same command goes through: the lock was what stopped it.
        code, out, err = cli(*args)
        assert code == 0, (out, err)
        assert snapshot(gov.store_url) != before
    finally:
        if writer == "freeze-all":  # the store is the module's: lift it for the others
            Ledger(open_store(gov.store_url)).set_global_freeze(None)


def test_the_installed_command_exits_75_under_contention(gov: Governed) -> None:
    deployed_base(gov)
    env = {**subprocess_env(gov.fake, gov.store_url), "GOVERNOR_WRITE_TIMEOUT_S": CONTENTION_S}
    before = snapshot(gov.store_url)

    with store_lock_held(gov.store_url):
        done = subprocess.run(
            [GOVERNOR, "degraded", gov.repo.full_name, "on", "--reason", "x", "--by", "op"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
        )

    assert done.returncode == 75, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert "governor: another governor write is in progress" in done.stderr
    assert snapshot(gov.store_url) == before


# -- 3. reconcile reports contention as a failed step: exit 1, not 75 ----------------------


def test_reconcile_under_contention_exits_1_with_the_contention_in_its_errors(
    gov: Governed, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployed_base(gov)
    monkeypatch.setenv("GOVERNOR_WRITE_TIMEOUT_S", CONTENTION_S)

    with store_lock_held(gov.store_url):
        code, summary, err = cli("reconcile", gov.repo.full_name)

    assert code == 1, (summary, err)
    assert summary["errors"], summary
    assert all("another governor write is in progress" in e for e in summary["errors"]), summary
    # docs/cli.md says so: 75 is not among reconcile's exit codes.
    docs = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    [row] = [line for line in docs.splitlines() if line.startswith("| `75` |")]
    assert "reconcile" not in row
    assert "`reconcile` does not exit 75" in docs


# -- 4. and 8. REPO as every command takes it ---------------------------------------------


@pytest.mark.parametrize("how", ["other-case", "id"])
def test_reconcile_repo_by_name_in_another_case_or_by_id_resumes_its_held_sha(
    gov: Governed, cli: Cli, how: str
) -> None:
    deployed_base(gov)
    repo_id = str(gov.repo.repo_id)
    code, _, err = cli("freeze", repo_id, "on", "--reason", "INC-4", "--by", "erin")
    assert code == 0, err
    sha = gov.commit("low", ["src/app.py"])
    assert gov.send(gov.verified(sha)).json()["reason"] == "freeze_window"
    code, out, err = cli("freeze", repo_id, "off", "--reason", "over", "--by", "erin")
    assert code == 0, err
    assert (out["scope"], out["held"]) == (gov.repo.full_name, [sha])
    assert dispatch_calls(gov) == []
    repo = gov.repo.full_name.upper() if how == "other-case" else repo_id

    code, summary, err = cli("reconcile", repo)

    assert code == 0, (summary, err)
    assert summary["visited"] == 1 and summary["errors"] == []
    assert summary["actions"]["hold_resumed"] == 1
    assert [c.json["inputs"] for c in dispatch_calls(gov)] == [{"sha": sha}]
    assert sha not in gov.state().holds


@pytest.mark.parametrize("repo", ["not a repo", "octo/", "-1", "octo/app/extra", ""])
def test_reconcile_with_a_malformed_repo_exits_2(cli: Cli, repo: str) -> None:
    code, out, err = cli("reconcile", repo)

    assert code == 2 and out is None
    assert "is not a repository: give owner/name or its numeric id" in err


def test_reconcile_of_an_unknown_repo_gives_the_error_approve_gives(cli: Cli) -> None:
    sha = "0" * 40
    code, out, reconciled = cli("reconcile", "octo/never-installed")
    assert code == 1 and out is None
    _code, _out, approved = cli("approve", "octo/never-installed", sha, "--reason", "x")
    assert _code == 1
    message = "governor: unknown repository 'octo/never-installed': the App is not installed on it"
    assert reconciled.strip() == approved.strip() == message


def test_rollback_freeze_and_degraded_take_the_numeric_id(gov: Governed, cli: Cli) -> None:
    a, b = production_b_after_a(gov)
    repo_id = str(gov.repo.repo_id)

    code, out, err = cli("freeze", repo_id, "on", "--reason", "INC-8", "--by", "fay")
    assert code == 0, err
    assert (out["scope"], out["on"], out["changed"]) == (gov.repo.full_name, True, True)
    frozen = gov.state().emergency_freeze
    assert frozen is not None and frozen.reason == "INC-8"
    code, out, err = cli("freeze", repo_id, "off", "--reason", "over", "--by", "fay")
    assert code == 0 and (out["on"], out["changed"]) == (False, True), err
    assert gov.state().emergency_freeze is None

    code, out, err = cli("degraded", repo_id, "on", "--reason", "5xx up", "--by", "gus")
    assert code == 0, err
    assert (out["what"], out["scope"], out["changed"]) == ("degraded", gov.repo.full_name, True)
    declared = gov.state().degraded
    assert declared is not None and declared.by == "gus"
    code, out, err = cli("degraded", repo_id, "off", "--reason", "fine", "--by", "gus")
    assert code == 0 and out["changed"] is True, err
    assert gov.state().degraded is None

    code, out, err = cli("rollback", repo_id, "--reason", "b is broken", "--by", "carol")
    assert code == 0, err
    assert (out["repo"], out["target"], out["from_sha"]) == (gov.repo.full_name, a, b)
    assert out["run_id"] == run_of(gov, a)
    assert [c.status for c in dispatch_calls(gov, a)] == [200]


# -- 5. a corrupt record is an error (1), not a usage error (2) ------------------------------


BREAKAGES = {
    "wrong-field": b'{"repo_id": "seventy-seven", "repo": "octo/broken"}',
    "not-json": b'{"repo_id": 77, "repo": "octo/bro',
}


@pytest.mark.parametrize("breakage", [*BREAKAGES, "no-header"])
def test_a_hand_broken_state_json_exits_1_naming_the_key_and_what_to_do(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    breakage: str,
) -> None:
    for name in [n for n in os.environ if n.startswith("GOVERNOR_")]:
        monkeypatch.delenv(name)
    root = tmp_path / "store"
    url = root.as_uri()
    key = state_key(77)
    if breakage == "no-header":  # written straight to the file, as by hand
        (root / "repos" / "77").mkdir(parents=True)
        (root / key).write_text('{"repo_id": 77}')
    else:
        open_store(url).put(key, BREAKAGES[breakage], if_generation_match=ABSENT)
    before = raw_files(root)

    for args in (
        ["status", "77"],
        ["status"],
        ["status", "octo/broken"],
        ["explain", "77", "abcd"],
        ["freeze", "77", "on", "--reason", "x", "--by", "op"],
        ["degraded", "octo/broken", "on", "--reason", "x", "--by", "op"],
    ):
        code = main(["--store", url, *args])
        out, err = capsys.readouterr()
        assert code == 1, (args, err)
        assert out == ""
        assert f"governor: the stored record '{key}' in {url} cannot be read (" in err, args
        assert f"look at it with 'governor store cat {key}'" in err
        assert "put back a good copy" in err
    assert raw_files(root) == before, "nothing written over the broken record"


def test_store_cat_of_an_object_without_its_header_exits_1_and_usage_errors_stay_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    (root / "repos" / "5").mkdir(parents=True)
    (root / "repos" / "5" / "state.json").write_text("{}")
    url = root.as_uri()

    assert main(["--store", url, "store", "cat", "repos/5/state.json"]) == 1
    err = capsys.readouterr().err
    assert "the stored record 'repos/5/state.json'" in err and "missing header" in err

    assert main(["--store", url, "store", "cat", "../etc/passwd"]) == 2
    assert "invalid object key" in capsys.readouterr().err
    monkeypatch.setenv("GOVERNOR_WRITE_TIMEOUT_S", "soon")
    assert main(["--store", url, "status"]) == 2
    assert "GOVERNOR_WRITE_TIMEOUT_S='soon' is not a number of seconds" in capsys.readouterr().err


# -- 6. the identity on S3: STS at its own endpoint ------------------------------------------


@pytest.fixture
def aws_without_endpoints(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """AWS as a machine without any endpoint configured: env and config files cleared."""
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")


def test_on_aws_sts_is_not_given_the_s3_endpoint(aws_without_endpoints: None) -> None:
    store = S3Store("bucket", "prefix")
    s3_endpoint = store._client.meta.endpoint_url

    sts = store.sts_client()

    assert s3_endpoint == "https://s3.eu-west-1.amazonaws.com"
    assert sts.meta.endpoint_url == "https://sts.eu-west-1.amazonaws.com"
    assert sts.meta.region_name == "eu-west-1"


def test_sts_takes_its_configured_endpoint_and_a_custom_s3_endpoint_only_without_one(
    aws_without_endpoints: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000")  # MinIO, say
    assert S3Store("bucket", "").sts_client().meta.endpoint_url == "http://127.0.0.1:9000"
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9001")
    assert S3Store("bucket", "").sts_client().meta.endpoint_url == "http://127.0.0.1:9001"
    given = boto3.client("s3", endpoint_url="http://127.0.0.1:9002", region_name="eu-west-1")
    assert S3Store("b", "", client=given).sts_client().meta.endpoint_url == (
        "http://127.0.0.1:9001"
    )


def test_the_identity_is_moto_s_arn_asked_at_the_sts_endpoint_not_at_s3(
    s3_emulator: str,
    s3_proxy: SerialProxy,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """S3 goes through the proxy, STS straight to moto: the proxy sees no STS request."""
    moto = f"http://{s3_proxy.upstream_host}:{s3_proxy.upstream_port}"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_emulator)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto)
    for name in [n for n in os.environ if n.startswith("GOVERNOR_")]:
        monkeypatch.delenv(name)
    url = f"s3://{BUCKET}/t-{uuid.uuid4().hex[:12]}"
    store = open_store(url)
    through_proxy = s3_proxy.requests

    assert credentials_identity(store) == MOTO_ARN
    assert s3_proxy.requests == through_proxy, "GetCallerIdentity went to the S3 endpoint"

    # What the commands record: `freeze --all` on the S3 store (its own prefix).
    code = main(["--store", url, "--json", "freeze", "--all", "on", "--reason", "x", "--by", "o"])
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert code == 0 and out["identity"] == MOTO_ARN
    frozen = Ledger(open_store(url)).read_global_freeze()
    assert frozen is not None and frozen.identity == MOTO_ARN


# -- 7. --json after any command ----------------------------------------------------------


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[Any]:
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subcommands:
        yield path, parser
    for action in subcommands:
        for name, child in action.choices.items():
            yield from _leaves(child, (*path, name))


def test_every_command_takes_json_after_it() -> None:
    leaves = dict(_leaves(cli_module._parser()))
    assert {" ".join(p) for p in leaves} >= {"store ls", "store cat", "policy check", "status"}
    for path, parser in leaves.items():
        options = {o for a in parser._actions for o in a.option_strings}
        assert "--json" in options, " ".join(path)


def test_store_ls_and_cat_take_json_before_and_after(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = (tmp_path / "store").as_uri()
    store = open_store(url)
    generation = store.put("repos/1/state.json", b'{"a": 1}', if_generation_match=ABSENT)
    shown = {"key": "repos/1/state.json", "generation": generation, "data": '{"a": 1}'}

    for args in (
        ["store", "ls", "--json"],
        ["store", "ls", "repos/", "--json"],
        ["store", "ls", "--json", "repos/"],
        ["--json", "store", "ls"],
        ["store", "--json", "ls"],
    ):
        assert main(["--store", url, *args]) == 0, args
        assert json.loads(capsys.readouterr().out) == ["repos/1/state.json"], args
    for args in (
        ["store", "cat", "repos/1/state.json", "--json"],
        ["store", "cat", "--json", "repos/1/state.json"],
        ["--json", "store", "cat", "repos/1/state.json"],
    ):
        assert main(["--store", url, *args]) == 0, args
        assert json.loads(capsys.readouterr().out) == shown, args
    assert main(["--store", url, "store", "ls"]) == 0
    assert capsys.readouterr().out == "repos/1/state.json\n", "without --json: text"


def test_the_installed_store_ls_takes_json_after_it(tmp_path: Path) -> None:
    url = (tmp_path / "store").as_uri()
    open_store(url).put("global/freeze.json", b"{}", if_generation_match=ABSENT)
    done = subprocess.run(
        [GOVERNOR, "--store", url, "store", "ls", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["global/freeze.json"]


# -- 8. help, and the exit codes in the module's docstring --------------------------------


def test_simulate_s_help_states_its_exit_codes() -> None:
    text = helped("simulate")
    assert "Decide every stored evaluation of SHA again" in text
    assert "--live" in text
    assert "Exit 0: every evaluation with stored inputs reproduced" in text
    assert "1: a mismatch under the same rules version" in text
    assert "5: a mismatch where the rules version changed" in text
    assert "5 simulate: decided differently under other rules" in text


def test_reconcile_s_help_states_its_exit_codes_and_repo() -> None:
    text = helped("reconcile")
    assert "only this repository (owner/name or id)" in text
    assert "--budget-s" in text
    assert "Exit 0 if every step went through; 1 if anything failed" in text
    assert "2 for a malformed REPO" in text
    assert "75 another governor write is in progress" in text  # the shared epilog


def test_store_s_help_and_the_module_docstring_list_every_exit_code() -> None:
    assert "Exit 1 if there is no object there" in helped("store", "cat")
    doc = " ".join((cli_module.__doc__ or "").split())
    for words in (
        "0 done",
        "1 error or not found",
        "2 usage or configuration error",
        "3 held / not allowed",
        "4 invalid policy file",
        "5 rules version changed (`simulate`",
        "75 (EX_TEMPFAIL) another governor write is in progress",
    ):
        assert words in doc, words


def test_the_identity_on_the_local_store_is_the_local_user(gov: Governed, cli: Cli) -> None:
    """The identity the docs promise for the local store, recorded by a writer."""
    deployed_base(gov)
    code, out, err = cli("degraded", gov.repo.full_name, "on", "--reason", "x", "--by", "op")
    assert code == 0, err
    assert out["identity"] == local_identity()
    declared = gov.state().degraded
    assert declared is not None and declared.identity == local_identity()
