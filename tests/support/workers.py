"""Code that runs in separate processes (multiprocessing 'spawn') for concurrency tests.

Each worker opens its own store from a URL, waits for a shared start signal so they all
collide, and reports through a queue. An exception is reported, not swallowed.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from governor.store import ABSENT, ObjectStore, PreconditionFailed, open_store, update

_CTX = multiprocessing.get_context("spawn")

WRITE_TIMEOUT_S = 300.0
"""How long one write of a worker may wait before WriteContention, instead of the
governor's 30 s. These tests check that no update is lost and that one claimant wins, not
how long a write waits: on a loaded 2-core machine, 16 to 32 processes contending for one
key can keep one of them out for more than 30 s without anything being wrong. (That a
write gives up at its bound is tested on its own, in test_store_conformance.py and
test_store_local_safety.py.) `run_processes` still ends a run that never finishes."""

READ_PAUSE_S = 0.05
"""Pause between two reads of `read_counter`: a rate, not a wait for something to happen.
Unpaced, the two readers read about three times as often through the S3 proxy as they
did straight against moto, and took moto's time from the conditional PUTs the proxy
serialises, until writers gave up; at this pace they read about as often as they did
straight against moto, still several times per write."""


def _store(url: str) -> ObjectStore:
    return open_store(url, write_timeout_s=WRITE_TIMEOUT_S)


def run_processes(
    target: Callable[..., Any], arg_sets: Sequence[tuple[Any, ...]], timeout_s: float = 240
) -> list[Any]:
    """Start one process per arg set, release them together, return their results.

    Results come in the order the processes finished, not the order of `arg_sets`.

    Each target is called as target(*args, start, results) and must put exactly one
    ("ok", value) or ("error", text) on `results`.
    """
    start = _CTX.Event()
    results = _CTX.Queue()
    processes = [_CTX.Process(target=target, args=(*args, start, results)) for args in arg_sets]
    for process in processes:
        process.start()
    start.set()
    collected = []
    deadline = time.monotonic() + timeout_s
    for _ in processes:
        collected.append(results.get(timeout=max(1, deadline - time.monotonic())))
    for process in processes:
        process.join(timeout=30)
    errors = [value for kind, value in collected if kind == "error"]
    if errors:
        raise AssertionError("worker failed:\n" + "\n".join(errors))
    return [value for _kind, value in collected]


def _report(results: Any, fn: Callable[[], Any]) -> None:
    try:
        results.put(("ok", fn()))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def increment_document(old: bytes | None) -> bytes:
    """Pure: add one to the counter. The padding makes torn reads detectable."""
    doc = json.loads(old) if old is not None else {"count": 0}
    count = doc["count"] + 1
    return json.dumps({"count": count, "pad": "x" * 4096, "check": count * 7}).encode()


def increment(url: str, key: str, times: int, start: Event, results: Any) -> None:
    def work() -> int:
        store = _store(url)
        start.wait()
        return sum(update(store, key, increment_document).conflicts for _ in range(times))

    _report(results, work)


def read_counter(url: str, key: str, stop_file: str, start: Event, results: Any) -> None:
    """Read until `stop_file` exists; every read must be a whole, non-decreasing document."""

    def work() -> dict[str, int]:
        store = _store(url)
        start.wait()
        reads, last = 0, 0
        while not os.path.exists(stop_file):
            current = store.get(key)
            if current is None:
                continue
            doc = json.loads(current.data)
            assert doc["check"] == doc["count"] * 7 and len(doc["pad"]) == 4096, doc
            assert doc["count"] >= last, f"counter went back from {last} to {doc['count']}"
            last = doc["count"]
            reads += 1
            time.sleep(READ_PAUSE_S)
        return {"reads": reads, "last": last}

    _report(results, work)


def claim_ids(url: str, worker: int, count: int, start: Event, results: Any) -> None:
    """Create `count` new sequential ids with create-only writes, probing upward on conflict."""

    def work() -> tuple[int, list[str]]:
        store = _store(url)
        start.wait()
        claimed = []
        candidate = 0
        for n in range(count):
            while True:
                key = f"ids/{candidate:06d}"
                body = json.dumps({"worker": worker, "n": n}).encode()
                try:
                    store.put(key, body, if_generation_match=ABSENT)
                except PreconditionFailed:
                    candidate += 1
                    continue
                claimed.append(key)
                break
        return worker, claimed

    _report(results, work)


def signed_blob(worker: int, seq: int, size: int) -> bytes:
    body = bytes([65 + worker % 26]) * size
    digest = hashlib.sha256(body).hexdigest()
    return f"{worker} {seq} {digest}\n".encode() + body


def check_signed_blob(raw: bytes) -> tuple[int, int]:
    header, _, body = raw.partition(b"\n")
    worker, seq, digest = header.decode().split()
    assert hashlib.sha256(body).hexdigest() == digest, "torn or interleaved object"
    assert len(set(body)) == 1, "bytes of two writers mixed"
    return int(worker), int(seq)


def write_blobs(
    url: str, key: str, worker: int, rounds: int, size: int, start: Event, results: Any
) -> None:
    """Unconditional overwrites of one key by many writers at once."""

    def work() -> int:
        store = _store(url)
        start.wait()
        for seq in range(rounds):
            store.put(key, signed_blob(worker, seq, size), if_generation_match=None)
        return rounds

    _report(results, work)


def read_blobs(url: str, key: str, stop_file: str, start: Event, results: Any) -> None:
    def work() -> int:
        store = _store(url)
        start.wait()
        reads = 0
        while not os.path.exists(stop_file):
            current = store.get(key)
            if current is not None:
                check_signed_blob(current.data)
                reads += 1
        return reads

    _report(results, work)


def put_and_hang_before_rename(url: str, key: str, data: bytes, ready_file: str) -> None:
    """Write `key` but stop for good between the temp file's fsync and the rename.

    The test SIGKILLs this process there: it holds the store's writer lock and has a
    complete temp file on disk, the worst moment for a writer to die.
    """
    from governor.store import local

    def replace_then_hang(src: Any, dst: Any) -> None:
        Path(ready_file).write_text(str(os.getpid()))
        while True:
            time.sleep(60)

    local.os.replace = replace_then_hang  # type: ignore[assignment]
    open_store(url).put(key, data, if_generation_match=None)


def race_intent(url: str, repo_id: int, sha: str, now_iso: str, start: Event, results: Any) -> None:
    """Record a dispatch intent for `sha`; report (my intent id, whether mine is the one kept)."""
    from datetime import datetime

    from governor.ledger import Ledger
    from governor.state import record_intent
    from governor.store.envelope import new_token

    def work() -> tuple[str, bool]:
        ledger = Ledger(_store(url))
        me = new_token()
        now = datetime.fromisoformat(now_iso)
        start.wait()
        after = ledger.transition(repo_id, "octo/app", lambda s: record_intent(s, sha, me, now))
        dispatch = after.dispatch_for(sha)
        assert dispatch is not None
        return me, dispatch.intent_id == me

    _report(results, work)


def claim_delivery(
    url: str, kind: str, guid: str, now_iso: str, start: Event, results: Any
) -> None:
    """Claim one delivery: on its own record (`delivery`) or in a decision record."""
    from datetime import datetime

    from governor.ledger import Ledger

    def work() -> str:
        ledger = Ledger(_store(url))
        now = datetime.fromisoformat(now_iso)
        site = (
            ledger.delivery_site(guid)
            if kind == "delivery"
            else ledger.decision_site(7, "octo/app", "a" * 40, "workflow-run-7-1-1")
        )
        start.wait()
        return ledger.claim(site, "workflow_run", now, guid=guid).status.value

    _report(results, work)
