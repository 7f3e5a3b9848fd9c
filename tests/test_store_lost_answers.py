"""A lost answer is not a conflict: a write whose answer the network lost is retried by
the cloud client, meets its own first write and gets 412. The store reads the object
back and reports success when it carries the write's own token (GCS metadata, the S3
nonce). Shown through a proxy that lets the emulator act and then drops the connection.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from governor.store import ABSENT, ObjectStore, PreconditionFailed, open_store

from tests.conftest import BUCKET
from tests.support.s3_serial_proxy import SerialProxy, serial_proxy


@pytest.fixture
def gcs_through_proxy(
    gcs_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ObjectStore, SerialProxy]]:
    with serial_proxy(gcs_emulator) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        yield open_store(f"gs://{BUCKET}/lost-{uuid.uuid4().hex[:8]}"), proxy


@pytest.fixture
def s3_through_proxy(s3_emulator: str, s3_proxy: SerialProxy) -> ObjectStore:
    return open_store(f"s3://{BUCKET}/lost-{uuid.uuid4().hex[:8]}")


def test_gcs_a_retried_write_that_meets_itself_succeeded(
    gcs_through_proxy: tuple[ObjectStore, SerialProxy],
) -> None:
    store, proxy = gcs_through_proxy
    first = store.put("doc.json", b"one", if_generation_match=ABSENT)
    proxy.lose_answers("POST", "/upload/")

    second = store.put("doc.json", b"two", if_generation_match=first)

    assert proxy.lost == 1  # the first attempt was made and its answer dropped
    current = store.get("doc.json")
    assert current is not None and current.data == b"two"
    assert current.generation == second


def test_gcs_a_create_whose_answer_was_lost_succeeded(
    gcs_through_proxy: tuple[ObjectStore, SerialProxy],
) -> None:
    store, proxy = gcs_through_proxy
    proxy.lose_answers("POST", "/upload/")

    generation = store.put("new.json", b"created", if_generation_match=ABSENT)

    assert proxy.lost == 1
    current = store.get("new.json")
    assert current is not None and (current.data, current.generation) == (b"created", generation)


def test_gcs_a_real_conflict_is_still_a_conflict(
    gcs_through_proxy: tuple[ObjectStore, SerialProxy],
) -> None:
    store, _proxy = gcs_through_proxy
    first = store.put("doc.json", b"one", if_generation_match=ABSENT)
    store.put("doc.json", b"someone else", if_generation_match=first)
    with pytest.raises(PreconditionFailed):
        store.put("doc.json", b"mine", if_generation_match=first)


def test_s3_a_retried_write_that_meets_itself_succeeded(
    s3_through_proxy: ObjectStore, s3_proxy: SerialProxy
) -> None:
    store = s3_through_proxy
    first = store.put("doc.json", b"one", if_generation_match=ABSENT)
    lost_before = s3_proxy.lost
    s3_proxy.lose_answers("PUT", "/doc.json")

    second = store.put("doc.json", b"two", if_generation_match=first)

    assert s3_proxy.lost == lost_before + 1
    current = store.get("doc.json")
    assert current is not None and current.data == b"two"
    assert current.generation == second


def test_s3_a_real_conflict_is_still_a_conflict(s3_through_proxy: ObjectStore) -> None:
    store = s3_through_proxy
    first = store.put("doc.json", b"one", if_generation_match=ABSENT)
    store.put("doc.json", b"someone else", if_generation_match=first)
    with pytest.raises(PreconditionFailed):
        store.put("doc.json", b"mine", if_generation_match=first)
