"""The `governor` command as a user runs it: the installed entry point, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from governor.store import ABSENT, open_store

GOVERNOR = str(Path(sys.executable).with_name("governor"))


def run(*args: str, store_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNOR_")}
    if store_url:
        env["GOVERNOR_STORE_URL"] = store_url
    return subprocess.run([GOVERNOR, *args], capture_output=True, text=True, env=env, check=False)


def test_help_and_version() -> None:
    help_text = run("--help")
    assert help_text.returncode == 0 and "store" in help_text.stdout
    assert "Exit 75" in help_text.stdout
    assert run("--version").stdout.startswith("governor ")


def test_store_ls_and_cat(tmp_path: Path) -> None:
    url = (tmp_path / "s").as_uri()
    store = open_store(url)
    store.put("repos/1/state.json", b'{"a": 1}', if_generation_match=ABSENT)
    store.put("repos/2/state.json", b'{"b": 2}', if_generation_match=ABSENT)

    listing = run("--json", "store", "ls", "repos/", store_url=url)
    assert listing.returncode == 0
    assert json.loads(listing.stdout) == ["repos/1/state.json", "repos/2/state.json"]

    shown = run("--json", "store", "cat", "repos/2/state.json", store_url=url)
    assert shown.returncode == 0
    current = store.get("repos/2/state.json")
    assert current is not None
    assert json.loads(shown.stdout) == {
        "key": "repos/2/state.json",
        "generation": current.generation,
        "data": '{"b": 2}',
    }
    plain = run("store", "cat", "repos/1/state.json", store_url=url)
    assert plain.stdout == '{"a": 1}'


def test_missing_object_exits_1(tmp_path: Path) -> None:
    result = run("store", "cat", "nope.json", store_url=(tmp_path / "s").as_uri())
    assert result.returncode == 1
    assert "no object at 'nope.json'" in result.stderr


def test_missing_or_bad_configuration_exits_2_with_a_hint(tmp_path: Path) -> None:
    unset = run("store", "ls")
    assert unset.returncode == 2 and "GOVERNOR_STORE_URL" in unset.stderr
    bad = run("--store", "ftp://example/x", "store", "ls")
    assert bad.returncode == 2 and "unsupported store URL" in bad.stderr
    bad_key = run("store", "cat", "../etc/passwd", store_url=(tmp_path / "s").as_uri())
    assert bad_key.returncode == 2 and "invalid object key" in bad_key.stderr
