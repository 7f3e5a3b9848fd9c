"""The storage contract, run identically on the local, GCS and S3 backends (real servers)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from governor.store import (
    ABSENT,
    ObjectStore,
    PreconditionFailed,
    WriteContention,
    open_store,
    update,
)

from tests.support import workers
from tests.support.s3_serial_proxy import SerialProxy


def test_missing_key_reads_as_none(store: ObjectStore) -> None:
    assert store.get("repos/1/state.json") is None


def test_create_only_succeeds_once(store: ObjectStore) -> None:
    generation = store.put("deliveries/abc.json", b"first", if_generation_match=ABSENT)
    with pytest.raises(PreconditionFailed):
        store.put("deliveries/abc.json", b"second", if_generation_match=ABSENT)
    current = store.get("deliveries/abc.json")
    assert current is not None
    assert (current.data, current.generation) == (b"first", generation)


def test_replace_needs_the_current_generation(store: ObjectStore) -> None:
    first = store.put("k.json", b"v1", if_generation_match=ABSENT)
    second = store.put("k.json", b"v2", if_generation_match=first)
    assert second != first
    with pytest.raises(PreconditionFailed):
        store.put("k.json", b"v3", if_generation_match=first)
    current = store.get("k.json")
    assert current is not None and current.data == b"v2" and current.generation == second


def test_replace_of_a_missing_key_fails(store: ObjectStore) -> None:
    generation = store.put("k.json", b"v1", if_generation_match=ABSENT)
    store.delete("k.json")
    with pytest.raises(PreconditionFailed):
        store.put("k.json", b"v2", if_generation_match=generation)
    assert store.get("k.json") is None


def test_generation_is_not_reused_after_delete_and_recreate(store: ObjectStore) -> None:
    # Same bytes on purpose: an S3 ETag alone would repeat here.
    old = store.put("k.json", b"same bytes", if_generation_match=ABSENT)
    store.delete("k.json")
    assert store.get("k.json") is None
    new = store.put("k.json", b"same bytes", if_generation_match=ABSENT)
    assert new != old
    with pytest.raises(PreconditionFailed):
        store.put("k.json", b"stale writer", if_generation_match=old)


def test_same_bytes_rewritten_get_a_new_generation(store: ObjectStore) -> None:
    first = store.put("k.json", b"same", if_generation_match=ABSENT)
    second = store.put("k.json", b"same", if_generation_match=first)
    assert second != first


def test_unconditional_put_overwrites(store: ObjectStore) -> None:
    store.put("k.json", b"v1", if_generation_match=ABSENT)
    store.put("k.json", b"v2", if_generation_match=None)
    current = store.get("k.json")
    assert current is not None and current.data == b"v2"


def test_delete_of_a_missing_key_is_quiet(store: ObjectStore) -> None:
    store.delete("never/was.json")
    assert store.get("never/was.json") is None


def test_list_by_prefix(store: ObjectStore) -> None:
    keys = [
        "repos/1/state.json",
        "repos/1/decisions/aaa.json",
        "repos/12/state.json",
        "deliveries/g1.json",
    ]
    for key in keys:
        store.put(key, b"{}", if_generation_match=ABSENT)
    assert store.list("repos/1/") == ["repos/1/decisions/aaa.json", "repos/1/state.json"]
    assert store.list("repos/1") == sorted(keys[:3])
    assert store.list() == sorted(keys)
    assert store.list("nothing/") == []


def test_five_megabyte_object_round_trips(store: ObjectStore) -> None:
    data = os.urandom(5 * 1024 * 1024)
    generation = store.put("big/blob.bin", data, if_generation_match=ABSENT)
    current = store.get("big/blob.bin")
    assert current is not None
    assert current.generation == generation
    assert current.data == data


def test_invalid_keys_are_refused_before_any_io(store: ObjectStore) -> None:
    for key in ["", "/abs", "a//b", "../escape", "a/../b", ".hidden", "a/.tmp-x", "sp ace"]:
        with pytest.raises(ValueError, match="invalid object key"):
            store.put(key, b"x", if_generation_match=ABSENT)
    assert store.list() == []


def test_update_creates_then_modifies(store: ObjectStore) -> None:
    first = update(store, "counter.json", workers.increment_document)
    second = update(store, "counter.json", workers.increment_document)
    assert json.loads(first.data)["count"] == 1
    assert json.loads(second.data)["count"] == 2
    assert second.written and second.conflicts == 0
    current = store.get("counter.json")
    assert current is not None and current.generation == second.generation


def test_update_that_changes_nothing_writes_nothing(store: ObjectStore) -> None:
    first = update(store, "k.json", lambda old: b"fixed")
    again = update(store, "k.json", lambda old: b"fixed")
    assert first.written and not again.written
    assert again.generation == first.generation


def test_update_reapplies_fn_after_a_conflict(store: ObjectStore) -> None:
    store.put("k.json", b"1", if_generation_match=ABSENT)
    seen: list[bytes | None] = []

    def add_one_after_a_rival_write(old: bytes | None) -> bytes:
        seen.append(old)
        if len(seen) == 1:  # another writer gets in between our read and our write
            current = store.get("k.json")
            assert current is not None
            store.put("k.json", b"10", if_generation_match=current.generation)
        return str(int(old or b"0") + 1).encode()

    result = update(store, "k.json", add_one_after_a_rival_write)
    assert seen == [b"1", b"10"]
    assert result.conflicts == 1 and result.data == b"11"


def _s3_proxy(request: pytest.FixtureRequest, store_url: str) -> SerialProxy | None:
    """The proxy in front of moto when `store_url` is on S3 (see `s3_proxy` in conftest)."""
    if not store_url.startswith("s3://"):
        return None
    proxy = request.getfixturevalue("s3_proxy")
    assert isinstance(proxy, SerialProxy)
    return proxy


RACE_BUDGET_S = 600
"""How long the 16 processes may take. On S3 every conditional PUT waits its turn at the
proxy, so the run takes 1 to 1.5 min on an idle 2-core machine and about 3 min on a busy
one: the bound is generous so that only a run that never ends fails by time."""


@pytest.mark.slow
@pytest.mark.timeout(2 * RACE_BUDGET_S)
def test_sixteen_processes_increment_without_losing_an_update(
    store_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    processes, per_process = 16, 50
    stop_file = tmp_path / "stop"
    store = open_store(store_url)
    store.put("counter.json", workers.increment_document(None), if_generation_match=ABSENT)
    # On S3 the count below proves the governor's loop only if moto's check-then-write
    # was made atomic, as real S3's is: every conditional PUT must go through the proxy.
    proxy = _s3_proxy(request, store_url)
    serialised_before = proxy.conditional_puts if proxy is not None else 0

    readers_result: list[object] = []
    readers = threading.Thread(
        target=lambda: readers_result.extend(
            workers.run_processes(
                workers.read_counter,
                [(store_url, "counter.json", str(stop_file))] * 2,
                timeout_s=RACE_BUDGET_S + 60,
            )
        )
    )
    readers.start()
    try:
        conflicts = workers.run_processes(
            workers.increment,
            [(store_url, "counter.json", per_process)] * processes,
            timeout_s=RACE_BUDGET_S,
        )
    finally:
        stop_file.touch()
        readers.join(timeout=60)

    current = store.get("counter.json")
    assert current is not None
    assert json.loads(current.data)["count"] == 1 + processes * per_process
    assert sum(conflicts) > 0, "the processes never collided, so this proved nothing"
    if proxy is not None:
        serialised = proxy.conditional_puts - serialised_before
        assert serialised >= processes * per_process, "the writes bypassed the S3 proxy"
    assert len(readers_result) == 2
    for reader in readers_result:
        assert isinstance(reader, dict) and reader["reads"] > 0


def test_update_gives_up_with_write_contention_when_it_never_wins(store: ObjectStore) -> None:
    """A rival rewrites the key on every attempt: the update must stop at its bound."""
    store.put("hot.json", b"0", if_generation_match=ABSENT)
    attempts = 0

    def always_overtaken(old: bytes | None) -> bytes:
        nonlocal attempts
        attempts += 1
        current = store.get("hot.json")
        assert current is not None
        store.put("hot.json", str(attempts).encode(), if_generation_match=current.generation)
        return b"mine"

    started = time.monotonic()
    with pytest.raises(WriteContention, match="another governor write is in progress") as info:
        update(store, "hot.json", always_overtaken, timeout_s=2)
    elapsed = time.monotonic() - started
    # The lower bound is the point: it kept trying for its whole bound, not less. The upper
    # bound only says it stopped; it is generous (15 times the bound) so that a loaded
    # machine, where one attempt may take seconds, cannot fail it.
    assert 2 <= elapsed <= 30
    assert "retry" in str(info.value) and "GOVERNOR_WRITE_TIMEOUT_S" in str(info.value)
    assert attempts > 1
    current = store.get("hot.json")
    assert current is not None and current.data != b"mine"
