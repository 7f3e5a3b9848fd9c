"""Local filesystem store (`file:///path`), for tests, laptops and self-hosted boxes.

Writers take one lock for the whole root (`fcntl.flock` on `<root>/.governor.lock`),
check the precondition, write a temporary file in the target's directory, fsync it,
`os.replace` it over the target and fsync the directory. The generation lives in the
file's header, so one rename publishes data and generation together. Readers take no
lock: a rename swaps whole files, so a reader sees the old or the new object, never a
mix. The kernel releases a flock when its holder dies, so a crashed writer never
blocks the others. The lock file is never deleted (deleting it would let two writers
hold locks on two different files).

The lock covers one `put` (check, write, rename), not a whole read-modify-write:
`update` reads without it, so two writers of one key can both compute a change and the
second `put` then fails its precondition and `update` runs again, as on GCS and S3.

The wait for the lock ends at the write timeout, or at the request's deadline
(`governor.deadline`) if that comes first: WriteContention or DeadlineExceeded.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from governor import deadline
from governor.store import envelope
from governor.store.base import (
    ABSENT,
    DEFAULT_WRITE_TIMEOUT_S,
    Generation,
    Precondition,
    PreconditionFailed,
    StoreConfigError,
    StoredObject,
    WriteContention,
    validate_key,
)

LOCK_NAME: Final = ".governor.lock"
TEMP_PREFIX: Final = ".tmp-"
_POLL_FIRST_S: Final = 0.0005
_POLL_MAX_S: Final = 0.05


class LocalStore:
    def __init__(self, root: Path, *, write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S) -> None:
        if not root.is_absolute():
            raise StoreConfigError(f"local store root must be an absolute path, got '{root}'")
        self.root = root
        self.url = root.as_uri()
        self.write_timeout_s = write_timeout_s
        self._strays_cleaned = False
        self._held = threading.local()  # per thread: flock does not tell threads apart

    # -- reads: no lock ---------------------------------------------------------------

    def credentials_identity(self) -> str | None:
        """The local user writing the files (`governor approve` records it)."""
        import getpass
        import socket

        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = f"uid {os.getuid()}"
        return f"{user}@{socket.gethostname()}"

    def get(self, key: str) -> StoredObject | None:
        path = self._path(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        generation, data = envelope.unwrap(raw, where=str(path))
        return StoredObject(data=data, generation=generation)

    def list(self, prefix: str = "") -> list[str]:
        keys = []
        for directory, _subdirs, files in os.walk(self.root):
            rel_dir = Path(directory).relative_to(self.root).as_posix()
            for name in files:
                if name.startswith(".") or name == LOCK_NAME:
                    continue
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    # -- writes: under the root lock --------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_generation_match: Precondition,
        timeout_s: float | None = None,
    ) -> Generation:
        path = self._path(key)
        with self._writer_lock(key, timeout_s):
            self._check(path, key, if_generation_match)
            generation = envelope.new_token()
            self._publish(path, envelope.wrap(generation, data))
            return generation

    def delete(self, key: str, *, if_generation_match: Generation | None = None) -> None:
        path = self._path(key)
        with self._writer_lock(key, None):
            if if_generation_match is not None:
                self._check(path, key, if_generation_match)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                _fsync_dir(path.parent)

    def _check(self, path: Path, key: str, expected: Precondition) -> None:
        """The concurrency rule: runs only while this process holds the root lock."""
        if expected is None:
            return
        current = self._current_generation(path)
        if expected is ABSENT:
            if current is not None:
                raise PreconditionFailed(key, expected)
        elif current != expected:
            raise PreconditionFailed(key, expected)

    def _current_generation(self, path: Path) -> Generation | None:
        try:
            with path.open("rb") as f:
                header = f.readline()
        except FileNotFoundError:
            return None
        generation, _ = envelope.unwrap(header, where=str(path))
        return generation

    def _publish(self, path: Path, raw: bytes) -> None:
        self._make_parents(path.parent)
        temp = path.parent / f"{TEMP_PREFIX}{envelope.new_token()}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(temp, path)
        _fsync_dir(path.parent)

    def _make_parents(self, directory: Path) -> None:
        if directory.is_dir():
            return
        missing = []
        while not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        for new_dir in reversed(missing):
            new_dir.mkdir(exist_ok=True)
            _fsync_dir(new_dir.parent)

    @contextlib.contextmanager
    def _writer_lock(self, key: str, timeout_s: float | None) -> Iterator[bool]:
        if getattr(self._held, "depth", 0):  # this thread holds it already (update -> put)
            self._held.depth += 1
            try:
                yield False
            finally:
                self._held.depth -= 1
            return
        timeout = self.write_timeout_s if timeout_s is None else timeout_s
        limit = deadline.limit(timeout, grace=True)
        self._make_parents(self.root)
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            pause = _POLL_FIRST_S
            waited = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                        raise
                remaining = limit.remaining()
                if remaining <= 0:
                    if limit.by_deadline:
                        raise deadline.exceeded(f"waiting for the store's lock to write '{key}'")
                    raise WriteContention(key, timeout)
                waited = True
                time.sleep(min(remaining, random.uniform(0, pause)))
                pause = min(_POLL_MAX_S, pause * 2)
            if not self._strays_cleaned:
                self._remove_stray_temp_files()
            self._held.depth = 1
            try:
                yield waited
            finally:
                self._held.depth = 0
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def _remove_stray_temp_files(self) -> None:
        """Temp files left by a writer that died before its rename.

        Safe only under the root lock: every live writer holds it while its temp file
        exists, so any temp file seen now belongs to a dead one.
        """
        for directory, _subdirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(TEMP_PREFIX):
                    (Path(directory) / name).unlink(missing_ok=True)
        self._strays_cleaned = True

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
