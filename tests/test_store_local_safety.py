"""Concurrent write safety of the local store (govctl RFC-0004), with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from governor.settings import AppSettings
from governor.store import (
    ABSENT,
    DEFAULT_WRITE_TIMEOUT_S,
    PreconditionFailed,
    WriteContention,
    open_store,
    update,
)
from governor.store.local import LOCK_NAME, TEMP_PREFIX, LocalStore

from tests.support import workers

REPO_ROOT = Path(__file__).resolve().parents[1]

GENEROUS_S = 30.0
"""Upper bound of every "it did not wait (longer than its bound)" below: many times what
it takes on an idle machine, so a loaded 2-core machine cannot fail it, and still far
below what waiting for the lock holder would take (it holds the lock for 600 s)."""

_HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(600)
"""


@contextmanager
def lock_held_by_another_process(root: Path) -> Iterator[subprocess.Popen[str]]:
    root.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(root / LOCK_NAME)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"{TEMP_PREFIX}*")]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.mark.slow
def test_sixteen_writers_and_readers_never_tear_an_object(root: Path, tmp_path: Path) -> None:
    url, key = root.as_uri(), "repos/1/state.json"
    stop_file = tmp_path / "stop"
    read_counts: list[int] = []
    readers = threading.Thread(
        target=lambda: read_counts.extend(
            workers.run_processes(workers.read_blobs, [(url, key, str(stop_file))] * 3)
        )
    )
    readers.start()
    try:
        written = workers.run_processes(
            workers.write_blobs, [(url, key, w, 25, 256 * 1024) for w in range(16)]
        )
    finally:
        stop_file.touch()
        readers.join(timeout=60)

    assert written == [25] * 16
    assert len(read_counts) == 3 and all(count > 0 for count in read_counts)
    final = open_store(url).get(key)
    assert final is not None
    worker, seq = workers.check_signed_blob(final.data)
    assert 0 <= worker < 16 and seq == 24  # the last write of whichever writer came last
    assert temp_files(root) == []


@pytest.mark.slow
def test_concurrent_creators_never_share_or_overwrite_an_id(root: Path) -> None:
    url = root.as_uri()
    claimed = workers.run_processes(workers.claim_ids, [(url, w, 20) for w in range(16)])

    all_ids = [key for _worker, keys in claimed for key in keys]
    assert len(all_ids) == 320
    assert len(set(all_ids)) == 320
    store = open_store(url)
    assert store.list("ids/") == sorted(all_ids)
    for worker, keys in claimed:
        for n, key in enumerate(keys):
            current = store.get(key)
            assert current is not None
            assert json.loads(current.data) == {"worker": worker, "n": n}, "overwritten"


def test_readers_do_not_wait_for_a_writer(root: Path) -> None:
    store = open_store(root.as_uri())
    for i in range(100):
        store.put(f"k/{i}.json", b"{}", if_generation_match=ABSENT)

    with lock_held_by_another_process(root):
        started = time.monotonic()
        for i in range(100):
            assert store.get(f"k/{i}.json") is not None
        assert len(store.list("k/")) == 100
        elapsed = time.monotonic() - started
    # A reader that waited for the writer would wait as long as the holder holds (600 s).
    assert elapsed <= GENEROUS_S


def test_a_blocked_write_fails_within_its_bound_with_an_actionable_message(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOVERNOR_STORE_URL", root.as_uri())
    monkeypatch.setenv("GOVERNOR_WEBHOOK_SECRET", "unused-but-long-enough")
    monkeypatch.setenv("GOVERNOR_WRITE_TIMEOUT_S", "2")
    settings = AppSettings()
    store = open_store(settings.store_url, write_timeout_s=settings.write_timeout_s)
    store.put("k.json", b"before", if_generation_match=ABSENT)

    with lock_held_by_another_process(root):
        started = time.monotonic()
        with pytest.raises(WriteContention) as info:
            store.put("k.json", b"after", if_generation_match=None)
        elapsed = time.monotonic() - started
        with pytest.raises(WriteContention):
            update(store, "k.json", lambda old: b"after")

    # The lower bound is the point: the write really waited for its whole bound (2 s)
    # before giving up. The upper bound only says it gave up rather than waiting for the
    # holder; generous, so that a loaded machine cannot fail it.
    assert 2.0 <= elapsed <= GENEROUS_S
    message = str(info.value)
    assert "another governor write is in progress" in message
    assert "retry" in message and "GOVERNOR_WRITE_TIMEOUT_S" in message
    current = store.get("k.json")
    assert current is not None and current.data == b"before"


def test_the_default_write_timeout_is_thirty_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOVERNOR_WRITE_TIMEOUT_S", raising=False)
    monkeypatch.setenv("GOVERNOR_STORE_URL", "file:///tmp/x")
    monkeypatch.setenv("GOVERNOR_WEBHOOK_SECRET", "unused-but-long-enough")
    assert DEFAULT_WRITE_TIMEOUT_S == 30
    assert AppSettings().write_timeout_s == 30
    assert LocalStore(Path("/tmp/x")).write_timeout_s == 30
    docs = (REPO_ROOT / "docs" / "storage.md").read_text()
    assert "GOVERNOR_WRITE_TIMEOUT_S" in docs and "30 s" in docs


def test_a_writer_killed_mid_write_leaves_the_old_object_and_blocks_nobody(
    root: Path, tmp_path: Path
) -> None:
    url, key = root.as_uri(), "repos/1/state.json"
    store = open_store(url)
    old_generation = store.put(key, b'{"v": "old"}', if_generation_match=ABSENT)
    ready = tmp_path / "ready"

    victim = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from tests.support.workers import put_and_hang_before_rename as f; "
            'f(sys.argv[1], sys.argv[2], b\'{"v": "new"}\', sys.argv[3])',
            url,
            key,
            str(ready),
        ],
        cwd=REPO_ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert victim.poll() is None, "the writer died before reaching the rename"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # It now holds the lock and has a complete temp file beside the object.
        assert len(temp_files(root)) == 1
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
    finally:
        if victim.poll() is None:
            victim.kill()

    current = store.get(key)
    assert current is not None
    assert (current.data, current.generation) == (b'{"v": "old"}', old_generation)
    assert store.list() == [key], "the stray temp file must not show up as a key"

    # The dead writer's lock went with it: the next writer does not wait it out (a lock
    # still held would end this put in WriteContention). The bound is generous, so a
    # loaded machine cannot fail it.
    next_writer = open_store(url)
    started = time.monotonic()
    next_writer.put(key, b'{"v": "next"}', if_generation_match=old_generation)
    assert time.monotonic() - started <= GENEROUS_S
    assert temp_files(root) == [], "the stray temp file is cleaned by the next writer"
    with pytest.raises(PreconditionFailed):
        next_writer.put(key, b"stale", if_generation_match=old_generation)


def test_a_foreign_file_in_the_root_is_reported_not_misread(root: Path) -> None:
    store = open_store(root.as_uri())
    root.mkdir(parents=True)
    (root / "handmade.json").write_text("{}")
    with pytest.raises(ValueError, match="not a governor object"):
        store.get("handmade.json")
