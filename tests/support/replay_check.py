"""Every evaluation the end-to-end suite stores is decided again, and must come out the same.

`tests/support/e2e.new_repo` registers each governed repository it makes (its store and
id). After each test, tests/conftest.py calls `check()`: every decision record of those
repositories is read back from the store and each evaluation simulated as `governor
simulate` does (`commands.simulate.simulate_record`, the rules on the stored inputs). An
evaluation must reproduce exactly (decision and inputs), or be one the rules did not make
(restored from a dispatch intent, or a rollback); one without its inputs, or a mismatch,
fails the test.
The session's tally is checked once at the end (`check_tally`): a run of many tests that
made governed repositories must have replayed many evaluations, so the check cannot pass
by finding nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from governor.commands.simulate import (
    NOT_REPRODUCIBLE_RESTORED,
    NOT_REPRODUCIBLE_ROLLBACK,
    Simulation,
    simulate_record,
)
from governor.ledger import DecisionRecord
from governor.store import open_store

MIN_TESTS_FOR_TALLY: Final = 10
"""From this many tests with governed repositories, the tally must be non-trivial: at
least one evaluation replayed for every two of them (measured: about one per test, e.g.
163 in 157 tests of the e2e, flow, operator, reconcile and fault suites)."""


@dataclass
class Tally:
    tests: int = 0
    """Tests that made governed repositories."""
    records: int = 0
    replayed: int = 0
    not_the_gates: int = 0
    """Restored from a dispatch intent, or a rollback: not replayable, by design."""
    overridden: int = 0
    """Replayed evaluations whose outcome was replaced at dispatch (the rules' part checked)."""
    by_reason: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.by_reason.items()))
        return (
            f"replayed {self.replayed} stored evaluations exactly ({self.overridden} overridden "
            f"at dispatch; {self.not_the_gates} restored or rollbacks, not the gate's) from "
            f"{self.records} "
            f"decision records of {self.tests} tests; reasons: {reasons or 'none'}"
        )


TALLY: Final = Tally()
NOT_THE_GATES: Final = (NOT_REPRODUCIBLE_RESTORED, NOT_REPRODUCIBLE_ROLLBACK)
_registered: list[tuple[str, int]] = []


def register(store_url: str, repo_id: int) -> None:
    """Check this repository's decision records after the current test."""
    _registered.append((store_url, repo_id))


def begin() -> None:
    _registered.clear()


def simulations(store_url: str, repo_id: int) -> list[Simulation]:
    """Every decision record of the repository, simulated."""
    store = open_store(store_url)
    found = []
    for key in sorted(store.list(f"decisions/{repo_id}/")):
        current = store.get(key)
        if current is None:
            continue
        record = DecisionRecord.model_validate_json(current.data)
        found.append(simulate_record(record, repo_id, record.repo))
    return found


def check() -> int:
    """Simulate the records of the repositories registered since `begin`; raise on any
    evaluation that is neither reproduced nor restored. Returns how many were replayed."""
    registered, problems, replayed = sorted(set(_registered)), [], 0
    _registered.clear()
    if registered:
        TALLY.tests += 1
    for store_url, repo_id in registered:
        for simulation in simulations(store_url, repo_id):
            TALLY.records += 1
            for s in simulation.evaluations:
                if s.result == "reproduced":
                    replayed += 1
                    TALLY.overridden += s.override is not None
                    reason = s.rules.reason if s.rules is not None else "?"
                    TALLY.by_reason[reason] = TALLY.by_reason.get(reason, 0) + 1
                elif s.result == "not_reproducible" and s.why in NOT_THE_GATES:
                    TALLY.not_the_gates += 1
                else:
                    differences = "; ".join(
                        f"{d.field}: stored {d.stored!r}, replayed {d.replayed!r}"
                        for d in s.differences
                    )
                    problems.append(
                        f"{simulation.repo} {simulation.sha[:12]} {s.trigger} "
                        f"{s.recorded.outcome} {s.recorded.reason}: {s.result}: "
                        f"{s.why or ''} {differences}"
                    )
    TALLY.replayed += replayed
    if problems:
        raise AssertionError(
            "stored evaluations that `governor simulate` does not reproduce:\n"
            + "\n".join(problems)
        )
    return replayed


def check_tally() -> None:
    if TALLY.tests >= MIN_TESTS_FOR_TALLY and TALLY.replayed < TALLY.tests // 2:
        raise AssertionError(f"too little was replayed to mean anything: {TALLY.line()}")
