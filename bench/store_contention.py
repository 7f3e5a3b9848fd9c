"""N processes x M `update`s of one key, per backend, against the raw local floor.

The floor is the same counter loop with no store layer, doing only what durability
needs: blocking flock, read, write a temp file, fsync, rename, fsync the directory.
Every figure comes from one run on one machine, so the ratios compare like with like
even when the machine is noisy.

    .venv/bin/python -m bench.store_contention --processes 8 --updates 50
"""

from __future__ import annotations

import argparse
import fcntl
import multiprocessing
import os
import queue
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from governor.store import open_store, update

from tests.support import emulators

_CTX = multiprocessing.get_context("spawn")
BUCKET = "governor-bench"


def _increment(old: bytes | None) -> bytes:
    return str(int(old or b"0") + 1).encode()


def store_worker(url: str, updates: int, start: Event, out: Any) -> None:
    store = open_store(url)
    latencies, conflicts = [], 0
    start.wait()
    for _ in range(updates):
        began = time.perf_counter()
        conflicts += update(store, "bench/counter", _increment).conflicts
        latencies.append(time.perf_counter() - began)
    out.put((latencies, conflicts))


def floor_worker(root: str, updates: int, start: Event, out: Any) -> None:
    """The least a durable local read-modify-write can do: no store layer at all.

    flock, read, write a temp file, fsync it, rename, fsync the directory: what
    durability needs, and nothing else (no envelope, no generation check, no retry).
    """
    target = os.path.join(root, "counter")
    latencies = []
    start.wait()
    for _ in range(updates):
        began = time.perf_counter()
        lock = os.open(os.path.join(root, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            try:
                with open(target, "rb") as f:
                    value = int(f.read())
            except FileNotFoundError:
                value = 0
            temp = os.path.join(root, f".tmp-{uuid.uuid4().hex}")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, str(value + 1).encode())
            os.fsync(fd)
            os.close(fd)
            os.replace(temp, target)
            directory = os.open(root, os.O_RDONLY)
            try:
                os.fsync(directory)  # the rename is durable only once its directory is
            finally:
                os.close(directory)
        finally:
            os.close(lock)
        latencies.append(time.perf_counter() - began)
    out.put((latencies, 0))


@dataclass
class Row:
    name: str
    updates: int
    seconds: float
    conflicts: int
    latencies: list[float]

    @property
    def per_second(self) -> float:
        return self.updates / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def run(name: str, worker: Callable[..., None], target: str, processes: int, updates: int) -> Row:
    start, out = _CTX.Event(), _CTX.Queue()
    procs = [
        _CTX.Process(target=worker, args=(target, updates, start, out)) for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    time.sleep(1.5)  # let every process finish importing before the clock starts
    began = time.perf_counter()
    start.set()
    results = [_result(out, procs) for _ in procs]
    seconds = time.perf_counter() - began
    for proc in procs:
        proc.join()
    latencies = [value for lat, _ in results for value in lat]
    return Row(name, processes * updates, seconds, sum(c for _, c in results), latencies)


def _result(out: Any, procs: list[Any]) -> Any:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            return out.get(timeout=0.5)
        except queue.Empty:
            if any(proc.exitcode not in (None, 0) for proc in procs):
                raise RuntimeError("a benchmark process failed; see its traceback above") from None
    raise TimeoutError("benchmark processes did not finish within 600 s")


@contextmanager
def backend_urls(backends: list[str]) -> Iterator[dict[str, str]]:
    with ExitStack() as stack:
        urls: dict[str, str] = {}
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        if "local" in backends:
            urls["local"] = (tmp / "store").as_uri()
        if "gcs" in backends:
            gcs = stack.enter_context(emulators.fake_gcs_server())
            emulators.create_gcs_bucket(gcs, BUCKET)
            os.environ["STORAGE_EMULATOR_HOST"] = gcs
            urls["gcs"] = f"gs://{BUCKET}/bench"
        if "s3" in backends:
            os.environ.update(emulators.S3_ENV)
            s3 = stack.enter_context(emulators.moto_s3_server())
            emulators.create_s3_bucket(s3, BUCKET)
            os.environ["AWS_ENDPOINT_URL"] = s3
            urls["s3"] = f"s3://{BUCKET}/bench"
        urls["floor"] = str(tmp / "floor")
        os.makedirs(urls["floor"])
        yield urls


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--updates", type=int, default=50, help="updates per process")
    parser.add_argument("--backends", default="local,gcs,s3")
    parser.add_argument("--repeat", type=int, default=3, help="local and floor runs; medians")
    args = parser.parse_args(argv)
    backends = args.backends.split(",")

    rows: list[Row] = []
    with backend_urls(backends) as urls:
        local_runs, floor_runs = [], []
        for _ in range(args.repeat if "local" in backends else 0):
            # Interleaved so that both see the same machine load.
            floor_runs.append(
                run("floor", floor_worker, urls["floor"], args.processes, args.updates)
            )
            local_runs.append(
                run("local", store_worker, _fresh(urls["local"]), args.processes, args.updates)
            )
        rows += [_median(floor_runs), _median(local_runs)] if local_runs else []
        for backend in ("gcs", "s3"):
            if backend in backends:
                rows.append(
                    run(backend, store_worker, _fresh(urls[backend]), args.processes, args.updates)
                )

    print(f"store contention: {args.processes} processes x {args.updates} updates of one key")
    print(
        f"{'backend':8} {'updates/s':>10} {'conflicts':>10} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'vs floor':>9}"
    )
    floor = next((r for r in rows if r.name == "floor"), None)
    for row in rows:
        ratio = f"{row.per_second / floor.per_second:.2f}x" if floor else "-"
        print(
            f"{row.name:8} {row.per_second:10.0f} {row.conflicts:10d} "
            f"{row.percentile(0.5):8.2f} {row.percentile(0.99):8.2f} {ratio:>9}"
        )
    if local_runs:
        ratios = [
            lr.per_second / fr.per_second for lr, fr in zip(local_runs, floor_runs, strict=True)
        ]
        print(f"local/floor per interleaved run: {', '.join(f'{r:.2f}' for r in ratios)}")
    return rows


def _fresh(url: str) -> str:
    return f"{url}/{uuid.uuid4().hex[:8]}"


def _median(runs: list[Row]) -> Row:
    return sorted(runs, key=lambda r: r.per_second)[len(runs) // 2]


if __name__ == "__main__":
    main()
