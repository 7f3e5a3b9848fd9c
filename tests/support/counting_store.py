"""A real store with every write and read counted: for write budgets in tests and benchmarks."""

from __future__ import annotations

from collections import Counter

from governor.store import Generation, ObjectStore, Precondition, StoredObject


class CountingStore:
    """The store, with every successful `put` (key, size), every delete and every `get` counted."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.write_timeout_s = inner.write_timeout_s
        self.puts: list[tuple[str, int]] = []
        self.gets = 0
        self.get_keys: list[str] = []

    def writes(self) -> Counter[str]:
        """Writes per key since the last `reset`."""
        return Counter(key for key, _size in self.puts)

    def reset(self) -> None:
        self.puts.clear()
        self.gets = 0
        self.get_keys.clear()

    def get(self, key: str) -> StoredObject | None:
        self.gets += 1
        self.get_keys.append(key)
        return self.inner.get(key)

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_generation_match: Precondition,
        timeout_s: float | None = None,
    ) -> Generation:
        generation = self.inner.put(
            key, data, if_generation_match=if_generation_match, timeout_s=timeout_s
        )
        self.puts.append((key, len(data)))
        return generation

    def delete(self, key: str, *, if_generation_match: Generation | None = None) -> None:
        self.puts.append((key, 0))
        self.inner.delete(key, if_generation_match=if_generation_match)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)
