"""Reconcile at scale: governed repositories with nothing to do, and what a run costs.

Each repository (`.github/release-governor.yml` naming deploy and verification
workflows) has production at a SHA whose verification run is the newest successful
`push` run on `main`, and no holds, intents or deploy runs: idle. Reconcile
(`governor.flows.reconcile.run`) is built as `governor.wiring` builds it, with a counting
store around the store and the App pointed at the fake GitHub of
tests/support/fake_github.py, with the budget `functions/main.py` gives it (default
settings: 500 repositories a run, round-robin). Per scenario, the clock moving 5 minutes
a run as Cloud Scheduler would:

- first: the runs until every repository was visited and has read its trusted policy
  (at most 150 a run: several runs for 1,000 repositories);
- steady: `--runs` runs (at least one round-robin cycle) once the repositories are idle:
  their last push over 2 hours ago, so no verification can be pending. The daily,
  staggered policy refresh is added from the code's constants (2 reads per 36 h).

Each run gets a new governor by default (`--instance cold`: a new process, so a new App
client and installation token), or one for all runs (`warm`). Per run: GitHub requests
by rate-limit bucket (the installation's, counted or answered 304; the App's JWT),
secondary-limit points in the busiest minute (GET 1, other methods 5) and the most
requests in flight, store gets/puts/lists, wall time. Per idle repository per hour at one
run every 5 minutes: the steady runs' cost, plus the policy refresh.

The fake tags a body by its bytes alone, so any token's ETag matches: the best case.
GitHub's ETags are token-specific; `--token-etags` runs scenarios once more with ETags
scoped to the token (tests/support/token_etags.py): `cold`, a new token every run;
`warm` (the default), one token an hour: the runs after a token change are measured as
"rotated", and every repository pays them once an hour.

Scenarios: the first layout (`--installations`) on the first store at every latency
and on the other stores at the first latency; other layouts on the first store at the
first latency.

    .venv/bin/python -m bench.reconcile_scale --repos 1000 --runs 2 --token-etags warm
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final
from unittest import mock

import msgspec
from governor.flows import reconcile
from governor.ledger import Ledger
from governor.reconcile_cursor import CURSOR_KEY, POLICY_REFRESH, VERIFY_WINDOW
from governor.settings import AppSettings, load_settings
from governor.state import deploy_succeeded
from governor.store import ObjectStore, StoredObject, open_store
from governor.wiring import Governor

from tests.support import emulators
from tests.support.counting_store import CountingStore
from tests.support.e2e import APP_ID, function_env
from tests.support.fake_github import Call, FakeGitHub
from tests.support.governed import BASE_POLICY, DEPLOY_FILE, VERIFY_FILE, sha_for
from tests.support.keys import rsa_key_pair
from tests.support.token_etags import TokenScopedEtagGitHub

BUCKET: Final = "governor-bench"
SCHEDULE: Final = timedelta(minutes=5)
RUNS_PER_HOUR: Final = timedelta(hours=1) / SCHEDULE
MAX_FIRST_RUNS: Final = 20
POLICY_REFRESH_PER_HOUR: Final = 2 / (1.5 * POLICY_REFRESH / timedelta(hours=1))
"""Counted requests per repository per hour for the staggered policy refresh: two reads
every POLICY_REFRESH plus a stagger uniform over as long again (1.5 x on average); from
the code's constants, not measured (a measure needs days of simulated runs)."""
"""The refresh run's clock: past POLICY_REFRESH for every repository the sweep read."""
POLICY_PATH: Final = ".github/release-governor.yml"
GOAL_COUNTED_PER_REPO_HOUR: Final = 1.0
GOAL_READS_PER_REPO: Final = 1.0
SECONDARY_POINTS_PER_MINUTE: Final = 900
SECONDARY_CONCURRENT: Final = 100


# -- set-up --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    installations: int
    repos_per_installation: int

    @property
    def repos(self) -> int:
        return self.installations * self.repos_per_installation

    def __str__(self) -> str:
        return f"{self.installations}x{self.repos_per_installation}"


@dataclass(frozen=True)
class Seeded:
    """An idle repository: its id, name and production SHA."""

    repo_id: int
    full_name: str
    sha: str


def seed_github(fake: FakeGitHub, layout: Layout) -> list[Seeded]:
    """The repositories on the fake: policy on main and at production, one verified run."""
    seeded: list[Seeded] = []
    for n in range(layout.installations):
        repos = fake.add_repos(
            layout.repos_per_installation,
            installation_id=101 + n,
            owner=f"org{n + 1}",
            first_repo_id=100_000 + n * 10_000,
            workflows=[(VERIFY_FILE, "Verify main"), (DEPLOY_FILE, "Deploy")],
        )
        for repo in repos:
            sha = sha_for(f"{repo.full_name}:base")
            repo.add_commit(sha, files=[{"filename": "README.md", "status": "modified"}])
            repo.set_file(POLICY_PATH, BASE_POLICY, ref=sha)
            repo.set_file(POLICY_PATH, BASE_POLICY, ref="main")
            repo.add_completed_run(VERIFY_FILE, head_sha=sha)
            seeded.append(Seeded(repo.repo_id, repo.full_name, sha))
    return seeded


def seed_store(store: ObjectStore, seeded: list[Seeded], now: datetime) -> None:
    """Production at each repository's SHA, as an earlier deploy left it."""
    ledger = Ledger(store)

    def one(repo: Seeded) -> None:
        ledger.transition(
            repo.repo_id, repo.full_name, lambda s: deploy_succeeded(s, repo.sha, now)
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, seeded))


class _Counting(CountingStore):
    """CountingStore, with listings counted too (the local store's daily expiry lists)."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.lists = 0
        self.got: Counter[str] = Counter()
        """Gets by what the key holds: state, cursor, or other."""

    def reset(self) -> None:
        super().reset()
        self.lists = 0
        self.got.clear()

    def get(self, key: str) -> StoredObject | None:
        kind = "cursor" if key == CURSOR_KEY else "state" if key.endswith("/state.json") else key
        self.got[kind] += 1
        return super().get(key)

    def list(self, prefix: str = "") -> list[str]:
        self.lists += 1
        return super().list(prefix)


class _BenchGovernor(Governor):
    """governor.wiring's Governor, with the counting store in place of its own."""

    def __init__(self, settings: AppSettings, store: ObjectStore) -> None:
        super().__init__(settings)
        self._counting = store

    @functools.cached_property
    def store(self) -> ObjectStore:
        return self._counting


# -- one run -------------------------------------------------------------------------------


@dataclass
class RunStats:
    kind: str
    """first, steady or rotated."""
    wall_s: float
    repositories: int
    visited: int
    calls: list[Call]
    peak_concurrency: int
    gets: int
    state_gets: int
    cursor_gets: int
    puts: int
    lists: int
    put_bytes: int
    actions: dict[str, int]
    errors: list[str]

    @property
    def policy_reads(self) -> int:
        return sum(c.operation_id == "repos/get-content" for c in self.calls)

    @property
    def installation_calls(self) -> list[Call]:
        return [c for c in self.calls if c.bucket.startswith("installation:")]

    @property
    def counted(self) -> int:
        """Requests counted against the installations' primary limits."""
        return sum(c.counted for c in self.installation_calls)

    @property
    def not_modified(self) -> int:
        return sum(c.status == 304 for c in self.installation_calls)

    @property
    def app_requests(self) -> int:
        return sum(c.bucket == "app" for c in self.calls)

    @property
    def max_installation_counted(self) -> int:
        per: Counter[str] = Counter(c.bucket for c in self.installation_calls if c.counted)
        return max(per.values(), default=0)

    def points_peak(self, bucket: str | None = None) -> int:
        return points_peak(c for c in self.calls if bucket is None or c.bucket == bucket)

    @property
    def max_installation_points(self) -> int:
        buckets = {c.bucket for c in self.installation_calls}
        return max((self.points_peak(b) for b in buckets), default=0)

    def operations(self) -> str:
        ops: Counter[str] = Counter()
        for call in self.calls:
            name = call.operation_id or f"{call.method} {call.path}"
            ops[f"{name} 304" if call.status == 304 else name] += 1
        return ", ".join(f"{name} x{count}" for name, count in sorted(ops.items()))


def points_peak(calls: Iterator[Call] | Sequence[Call], window_s: float = 60.0) -> int:
    """The most secondary-limit points in any `window_s` (GET 1 point, other methods 5)."""
    events = sorted((c.at, 1 if c.method == "GET" else 5) for c in calls)
    peak = total = low = 0
    for at, points in events:
        total += points
        while events[low][0] <= at - window_s:
            total -= events[low][1]
            low += 1
        peak = max(peak, total)
    return peak


class SimClock:
    """The run's time: a base the schedule moves, plus the time the run itself takes."""

    def __init__(self) -> None:
        self.base = datetime.now(UTC)
        self.offset = timedelta(0)
        self._began = time.monotonic()

    def at(self, offset: timedelta) -> None:
        self.offset, self._began = offset, time.monotonic()

    def __call__(self) -> datetime:
        return self.base + self.offset + timedelta(seconds=time.monotonic() - self._began)


def one_run(
    kind: str,
    fake: FakeGitHub,
    store: _Counting,
    governor: Governor,
    clock: SimClock,
) -> RunStats:
    settings = governor.settings
    budget = reconcile.Budget(
        seconds=settings.reconcile_budget_s,
        max_repos=settings.reconcile_max_repos,
        max_redeliveries=settings.reconcile_max_redeliveries,
    )
    ctx = msgspec.structs.replace(governor.context, clock=clock)
    fake.reset_request_counts()
    with fake.lock:
        first_call = len(fake.calls)
    store.reset()
    began = time.perf_counter()
    summary = reconcile.run(ctx, governor.app, budget)
    wall_s = time.perf_counter() - began
    with fake.lock:
        calls = list(fake.calls[first_call:])
        peak = fake.peak_concurrency
    return RunStats(
        kind=kind,
        wall_s=wall_s,
        repositories=summary.repositories,
        visited=summary.visited,
        calls=calls,
        peak_concurrency=peak,
        gets=store.gets,
        state_gets=store.got["state"],
        cursor_gets=store.got["cursor"],
        puts=len(store.puts),
        lists=store.lists,
        put_bytes=sum(size for _, size in store.puts),
        actions={k: v for k, v in summary.actions.items() if v},
        errors=list(summary.errors),
    )


# -- one scenario --------------------------------------------------------------------------


@dataclass
class Scenario:
    store: str
    layout: Layout
    latency_ms: int
    instance: str
    etags: str
    runs: list[RunStats] = field(default_factory=list)
    seed_s: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.store} {self.layout} {self.latency_ms} ms {self.instance}" + (
            " token-etags" if self.etags == "token" else ""
        )

    def of(self, kind: str) -> list[RunStats]:
        return [r for r in self.runs if r.kind == kind]

    @property
    def steady(self) -> list[RunStats]:
        return self.of("steady")

    def steady_mean(self, value: Callable[[RunStats], float]) -> float:
        return statistics.mean(value(r) for r in self.steady)

    def per_repo_hour(self, value: Callable[[RunStats], float]) -> float:
        """`value` per repository per hour, at one run every 5 minutes (the steady runs'
        cost x 12)."""
        repos = self.layout.repos
        hourly = self.steady_mean(value) * RUNS_PER_HOUR / repos
        rotated = self.of("rotated")  # one token change an hour (warm instance)
        if rotated and self.visits_per_repo_hour >= 1:
            extra = sum(value(r) - self.steady_mean(value) for r in rotated) / repos
            hourly += max(extra, 0.0)
        return hourly

    @property
    def visits_per_repo_hour(self) -> float:
        return self.steady_mean(lambda r: r.visited) * RUNS_PER_HOUR / self.layout.repos


def run_scenario(
    fake: FakeGitHub,
    seeded: list[Seeded],
    scenario: Scenario,
    store_url: str,
    steady_runs: int,
) -> Scenario:
    fake.latency_s = scenario.latency_ms / 1000
    env = function_env(fake, store_url, GOVERNOR_GITHUB_APP_SLUG=fake.app_slug)
    with mock.patch.dict(os.environ, env):
        settings = load_settings()
    store = _Counting(open_store(store_url, write_timeout_s=settings.write_timeout_s))
    clock = SimClock()
    began = time.perf_counter()
    seed_store(store, seeded, clock.base)
    scenario.seed_s = time.perf_counter() - began
    warm = _BenchGovernor(settings, store)

    def governor() -> Governor:
        return warm if scenario.instance == "warm" else _BenchGovernor(settings, store)

    # The first runs: until every repository was visited and has learned its trusted
    # policy (at most POLICY_READS_PER_RUN a run), 5 minutes apart.
    cycle = math.ceil(scenario.layout.repos / settings.reconcile_max_repos)
    offset = timedelta(0)
    for n in range(MAX_FIRST_RUNS):
        clock.at(offset)
        run = one_run("first", fake, store, governor(), clock)
        scenario.runs.append(run)
        offset += SCHEDULE
        if n + 1 >= cycle and run.policy_reads == 0:
            break
    # Steady: idle, the last push more than VERIFY_WINDOW ago, 5 minutes apart.
    offset += VERIFY_WINDOW
    schedule = [("steady", offset + SCHEDULE * n) for n in range(max(steady_runs, cycle))]
    if scenario.instance == "warm" and scenario.etags == "token":
        # The hourly token change, as a warm instance sees it: the runs after it, until
        # every repository was visited once with the new token. (The fake makes the old
        # token fail with 401: one request more than GitHub's refresh before expiry costs.)
        after = offset + SCHEDULE * len(schedule)
        schedule += [("rotated", after + SCHEDULE * n) for n in range(cycle)]
    for n, (kind, at) in enumerate(schedule):
        clock.at(at)
        if kind == "rotated" and schedule[n - 1][0] != "rotated":
            fake.expire_installation_tokens()
        scenario.runs.append(one_run(kind, fake, store, governor(), clock))
    fake.latency_s = 0.0
    return scenario


@contextmanager
def store_urls(stores: Sequence[str]) -> Iterator[Callable[[str], str]]:
    """A function giving a fresh, empty store URL of a kind, for each scenario."""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-reconcile-")))
        if "gcs" in stores:
            gcs = stack.enter_context(emulators.fake_gcs_server())
            emulators.create_gcs_bucket(gcs, BUCKET)
            stack.enter_context(mock.patch.dict(os.environ, {"STORAGE_EMULATOR_HOST": gcs}))

        def fresh(kind: str) -> str:
            name = uuid.uuid4().hex[:8]
            if kind == "local":
                return (tmp / name).as_uri()
            if kind == "gcs":
                return f"gs://{BUCKET}/{name}"
            raise ValueError(f"unknown store {kind!r}: local or gcs")

        yield fresh


# -- report --------------------------------------------------------------------------------


def _goal(met: bool) -> str:
    return "met" if met else "NOT met"


def _mean(runs: Sequence[RunStats], value: Callable[[RunStats], float]) -> float:
    return statistics.mean(value(r) for r in runs)


def _per_visit(runs: Sequence[RunStats], value: Callable[[RunStats], float]) -> str:
    visited = _mean(runs, lambda run: run.visited)
    return f"{_mean(runs, value) / visited:.3f}" if visited else "-"


def print_report(argv: Sequence[str], scenarios: list[Scenario], steady_runs: int) -> None:
    command = " ".join([".venv/bin/python -m bench.reconcile_scale", *argv])
    print(f"reconcile at scale: idle governed repositories; {command}")
    print(
        f"run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; reconcile_max_repos "
        f"{load_default_settings().reconcile_max_repos}; per scenario the first runs (until "
        f"every repository was visited and knows its policy), then {steady_runs} or more "
        f"steady runs (idle: the last push over 2 h ago), 5 min apart; rows: means per run"
    )
    print(
        f"{'scenario':30} {'run':9} {'wall s':>6} {'visited':>7} {'GH/rep':>6} "
        f"{'cnt/rep':>7} {'304/rep':>7} {'app':>3} {'pts/min':>7} {'inst pts':>8} "
        f"{'conc':>4} {'gets/rep':>8} {'puts':>4} {'lists':>5} {'put KB':>6}"
    )
    for sc in scenarios:
        for label in ("first", "steady", "rotated"):
            runs = sc.of(label)
            if not runs:
                continue
            visited = _mean(runs, lambda r: r.visited)

            def per(value: Callable[[RunStats], float], runs: list[RunStats] = runs) -> str:
                return _per_visit(runs, value)

            print(
                f"{sc.name:30} {label:9} {_mean(runs, lambda r: r.wall_s):6.2f} "
                f"{visited:7.0f} {per(lambda r: len(r.calls)):>6} {per(lambda r: r.counted):>7} "
                f"{per(lambda r: r.not_modified):>7} {_mean(runs, lambda r: r.app_requests):3.0f} "
                f"{_mean(runs, lambda r: r.points_peak()):7.0f} "
                f"{_mean(runs, lambda r: r.max_installation_points):8.0f} "
                f"{max(r.peak_concurrency for r in runs):4d} {per(lambda r: r.gets):>8} "
                f"{_mean(runs, lambda r: r.puts):4.0f} {_mean(runs, lambda r: r.lists):5.0f} "
                f"{_mean(runs, lambda r: r.put_bytes) / 1024:6.0f}"
            )
    print(
        "GH/rep: GitHub requests per visited repository, every bucket; cnt/rep: counted "
        "against the installations' primary limits; 304/rep: answered 304 Not Modified (not "
        "counted); app: App-JWT requests (installations, deliveries, tokens: the App's own "
        "limit); pts/min: secondary-limit points in the busiest minute (GET 1, POST 5), every "
        "bucket; inst pts: the busiest installation's; conc: most requests in flight; "
        "gets/rep: store gets per visited repository, the cursor's included; put KB: bytes "
        "written (the cursor); rotated: a steady run right after the installation token changed"
    )
    print()
    print(
        f"{'per idle repository per hour':30} {'visits':>6} {'GH':>7} {'counted':>7} "
        f"{'304':>7} {'reads':>7} {'app/h':>6} {'max inst/h':>10}"
    )
    for sc in scenarios:
        print(
            f"{sc.name:30} {sc.visits_per_repo_hour:6.2f} "
            f"{sc.per_repo_hour(lambda r: len(r.calls)):7.3f} "
            f"{sc.per_repo_hour(lambda r: r.counted) + POLICY_REFRESH_PER_HOUR:7.3f} "
            f"{sc.per_repo_hour(lambda r: r.not_modified):7.3f} "
            f"{sc.per_repo_hour(lambda r: r.gets):7.3f} "
            f"{sc.steady_mean(lambda r: r.app_requests) * RUNS_PER_HOUR:6.0f} "
            f"{sc.steady_mean(lambda r: r.max_installation_counted) * RUNS_PER_HOUR:10.0f}"
        )
    print(
        "at one run every 5 minutes: the steady runs' cost x 12, plus for a warm instance with "
        "token-scoped ETags one token change an hour (rotated runs over steady ones); counted "
        f"includes the staggered policy refresh, {POLICY_REFRESH_PER_HOUR:.3f} a repository "
        "an hour (2 reads per 36 h on average: from the code's constants, not measured); "
        "app/h: App-JWT requests an hour in all; max inst/h: counted requests an hour of the "
        "busiest installation"
    )
    print()
    sample = scenarios[0]
    for label in ("first", "steady"):
        if sample.of(label):
            print(f"{sample.name}, {label} run: {sample.of(label)[0].operations()}")
    for sc in scenarios:
        for r in sc.runs:
            if r.errors or any(k != "expired" for k in r.actions):
                print(f"NOT IDLE {sc.name} {r.kind}: actions {r.actions}, errors {r.errors[:3]}")
    print()
    for sc in scenarios:
        counted = sc.per_repo_hour(lambda r: r.counted) + POLICY_REFRESH_PER_HOUR
        state_reads = sc.steady_mean(lambda r: r.state_gets) / max(
            sc.steady_mean(lambda r: r.visited), 1
        )
        cursor_reads = sc.steady_mean(lambda r: r.cursor_gets)
        reads = sc.steady_mean(lambda r: r.gets) / max(sc.steady_mean(lambda r: r.visited), 1)
        steady_points = max(r.points_peak() for r in sc.steady)
        all_points = max(r.points_peak() for r in sc.runs)
        worst = max(sc.runs, key=lambda r: r.points_peak())
        concurrency = max(r.peak_concurrency for r in sc.runs)
        print(
            f"goal [{sc.name}]: counted per idle repository per hour <= "
            f"{GOAL_COUNTED_PER_REPO_HOUR:g}: {counted:.3f}, "
            f"{_goal(counted <= GOAL_COUNTED_PER_REPO_HOUR)}; secondary limits: steady runs "
            f"{steady_points} points/min (<= {SECONDARY_POINTS_PER_MINUTE}), "
            f"{_goal(steady_points <= SECONDARY_POINTS_PER_MINUTE)}; every run: {all_points} "
            f"points/min ({worst.kind} run), {concurrency} in flight (<= "
            f"{SECONDARY_CONCURRENT}), "
            f"{_goal(all_points <= SECONDARY_POINTS_PER_MINUTE and concurrency <= 100)}; "
            f"store reads per idle repository <= {GOAL_READS_PER_REPO:g}: {state_reads:.3f} "
            f"of its state, {_goal(state_reads <= GOAL_READS_PER_REPO)}; {reads:.4f} with the "
            f"cursor's {cursor_reads:g} a run, {_goal(reads <= GOAL_READS_PER_REPO)}"
        )


def load_default_settings() -> AppSettings:
    private, _ = rsa_key_pair()
    env = {
        "GOVERNOR_STORE_URL": "file:///nonexistent",
        "GOVERNOR_WEBHOOK_SECRET": "x" * 16,
        "GOVERNOR_GITHUB_APP_ID": APP_ID,
        "GOVERNOR_GITHUB_PRIVATE_KEY": private,
    }
    with mock.patch.dict(os.environ, env):
        return load_settings()


# -- main ----------------------------------------------------------------------------------


def parse_layouts(text: str, repos: int) -> list[Layout]:
    """`1,10`: all repositories in one installation, then spread over ten."""
    layouts = []
    for part in text.split(","):
        installations = int(part)
        layouts.append(Layout(installations, math.ceil(repos / installations)))
    return layouts


def main(argv: list[str] | None = None) -> list[Scenario]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=1000, help="governed repositories")
    parser.add_argument(
        "--installations",
        default="1,10",
        help="layouts: the repositories over N installations (the first: on the first store "
        "at every latency, on the other stores at the first; the others: first store, first "
        "latency)",
    )
    parser.add_argument("--stores", default="local,gcs", help="local, gcs (fake-gcs-server)")
    parser.add_argument("--latencies", default="0,50", help="ms added per GitHub request")
    parser.add_argument(
        "--runs", type=int, default=1, help="steady runs after the first visit of everything"
    )
    parser.add_argument(
        "--instance",
        choices=("cold", "warm"),
        default="cold",
        help="cold: a new governor (App, token) each run; warm: one for all runs",
    )
    parser.add_argument(
        "--token-etags",
        default="warm",
        help="instances (cold, warm; empty: none) run once more, on the first store, layout "
        "and latency, against a fake whose ETags are scoped to the token, as GitHub's are",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    stores = args.stores.split(",")
    latencies = [int(ms) for ms in args.latencies.split(",")]
    layouts = parse_layouts(args.installations, args.repos)
    token_etags = [i for i in args.token_etags.split(",") if i]
    if set(token_etags) - {"cold", "warm"}:
        parser.error("--token-etags: cold, warm, or both")
    _private, public = rsa_key_pair()

    scenarios: list[Scenario] = []
    with store_urls(stores) as fresh:
        for n, layout in enumerate(layouts):
            # The first layout on the first store at every latency and on the others at the
            # first latency, then with token-scoped ETags; other layouts (what splitting
            # over installations changes: listings, tokens) on the first store and latency.
            combos = [(stores[0], ms) for ms in latencies]
            combos += [(store, latencies[0]) for store in stores[1:]]
            fake = TokenScopedEtagGitHub(app_id=APP_ID, public_key_pem=public)
            with fake:
                fake.scoped = False  # the plain fake's ETags, until the token scenarios
                seeded = seed_github(fake, layout)
                for store, latency_ms in combos if n == 0 else combos[:1]:
                    scenario = Scenario(store, layout, latency_ms, args.instance, "body")
                    scenarios.append(run_scenario(fake, seeded, scenario, fresh(store), args.runs))
                    _progress(scenario)
                fake.scoped = True
                for instance in token_etags if n == 0 else []:
                    scenario = Scenario(stores[0], layout, latencies[0], instance, "token")
                    scenarios.append(
                        run_scenario(fake, seeded, scenario, fresh(stores[0]), args.runs)
                    )
                    _progress(scenario)
                if fake.violations:
                    print(f"requests outside GitHub's description: {fake.violations[:5]}")
    print_report(argv if argv is not None else sys.argv[1:], scenarios, args.runs)
    return scenarios


def _progress(scenario: Scenario) -> None:
    walls = ", ".join(f"{r.wall_s:.1f}" for r in scenario.runs)
    print(
        f"  done: {scenario.name} (seeding {scenario.seed_s:.1f} s; runs {walls} s)",
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    main()
