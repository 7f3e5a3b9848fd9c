"""Editing a stored decision record in place, as only a bug (or a person) would: what the
replay check (tests/support/replay_check.py) must catch."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from governor.ledger import decision_key
from governor.store import open_store


def tamper(
    store_url: str, repo_id: int, sha: str, changes: Mapping[str, Any], index: int = -1
) -> bytes:
    """Change fields (`outcome`, `reason`, `detail`, ...) of the evaluation at `index` of
    the SHA's stored decision record, with a conditional write; returns the record as it
    was, for `restore`."""
    store = open_store(store_url)
    key = decision_key(repo_id, sha)
    current = store.get(key)
    assert current is not None, f"no decision record at {key}"
    record = json.loads(current.data)
    evaluation = record["evaluations"][index]
    assert all(name in evaluation for name in changes), sorted(evaluation)
    evaluation.update(changes)
    store.put(key, json.dumps(record).encode(), if_generation_match=current.generation)
    return current.data


def restore(store_url: str, repo_id: int, sha: str, data: bytes) -> None:
    """Put the record back as it was before `tamper`."""
    store = open_store(store_url)
    key = decision_key(repo_id, sha)
    current = store.get(key)
    assert current is not None
    store.put(key, data, if_generation_match=current.generation)
