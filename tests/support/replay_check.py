"""Every evaluation the end-to-end suite stores is decided again, and must come out the same.

`tests/support/e2e.new_repo` registers each governed repository it makes (its store and
id). Every decision record of those repositories is read back from the store and each
evaluation simulated as `governor simulate` does (`commands.simulate.simulate_record`,
the rules on the stored inputs). An evaluation the rules made must reproduce exactly
(decision and inputs); one without its inputs, or a mismatch, fails.

When: a repository made by a test (or by a function-scoped fixture of it) is checked
after that test (`check`, from tests/conftest.py). One made while a longer-lived fixture
is set up (module-, class-, package- or session-scoped: the decision pages' `decided`)
belongs to that fixture, not to the test that first needed it: it is checked when the
fixture is torn down (`made_by_fixture`, `check_fixture`), so what every test of the
module did to it is replayed too. Either failure names the repository, the SHA and the
`governor simulate` command that shows it.

Not the gate's: an evaluation restored from a dispatch intent (the delivery that decided
died before recording it, and its inputs with it) and a rollback (decided by
`decide_rollback`, whose inputs, the trusted policy's text, the release state and the
freezes, are not kept) cannot be decided again. What they must be is still checked: both
record a dispatch, so ALLOW; a rollback's reason is `rollback`, with no risk, and its
detail is `rollback to <sha7> by <who>: <why>` from its own inputs, forced through a
freeze exactly when its inputs say so (docs/reasons.md#rollback).

The session's tally is checked once at the end (`check_tally`): a run of many tests that
made governed repositories must have replayed many evaluations, so the check cannot pass
by finding nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

from governor.commands.simulate import (
    NOT_REPRODUCIBLE_RESTORED,
    NOT_REPRODUCIBLE_ROLLBACK,
    Simulated,
    Simulation,
    simulate_record,
)
from governor.decision import Outcome, Reason
from governor.ledger import DecisionRecord, Evaluation
from governor.store import open_store

MIN_TESTS_FOR_TALLY: Final = 10
"""From this many tests with governed repositories, the tally must be non-trivial: at
least one evaluation replayed for every two of them (measured: about one per test, e.g.
163 in 157 tests of the e2e, flow, operator, reconcile and fault suites)."""

Governed = tuple[str, int]
"""A registered repository: (store URL, repository id)."""


@dataclass
class Tally:
    tests: int = 0
    """Tests that made governed repositories."""
    fixtures: int = 0
    """Longer-lived fixtures (module, session, ...) that made governed repositories."""
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
            f"decision records of {self.tests} tests and {self.fixtures} module or session "
            f"fixtures; reasons: {reasons or 'none'}"
        )


TALLY: Final = Tally()
NOT_THE_GATES: Final = (NOT_REPRODUCIBLE_RESTORED, NOT_REPRODUCIBLE_ROLLBACK)
_registered: list[Governed] = []
"""Made by the test being run (or its function-scoped fixtures)."""
_fixtures: list[list[Governed]] = []
"""Made by the longer-lived fixtures being set up right now, innermost last."""


def register(store_url: str, repo_id: int) -> None:
    """Check this repository's decision records after the current test, or when the
    longer-lived fixture being set up is torn down."""
    (_fixtures[-1] if _fixtures else _registered).append((store_url, repo_id))


@contextmanager
def made_by_fixture() -> Iterator[list[Governed]]:
    """Around the setup of a fixture that outlives a test: the repositories registered
    meanwhile are its own (check them with `check_fixture` at its teardown)."""
    made: list[Governed] = []
    _fixtures.append(made)
    try:
        yield made
    finally:
        assert _fixtures.pop() is made


def simulations(store_url: str, repo_id: int) -> list[tuple[DecisionRecord, Simulation]]:
    """Every decision record of the repository, and its simulation."""
    store = open_store(store_url)
    found = []
    for key in sorted(store.list(f"decisions/{repo_id}/")):
        current = store.get(key)
        if current is None:
            continue
        record = DecisionRecord.model_validate_json(current.data)
        found.append((record, simulate_record(record, repo_id, record.repo)))
    return found


def check() -> int:
    """Simulate the records of the repositories the test that just ran registered; raise
    on any evaluation that does not reproduce. Returns how many were replayed."""
    registered = sorted(set(_registered))
    _registered.clear()
    if registered:
        TALLY.tests += 1
    return check_repos(registered)


def check_fixture(made: Iterable[Governed], fixture: str) -> int:
    """`check`, at the teardown of the longer-lived fixture that made `made`."""
    repos = sorted(set(made))
    if repos:
        TALLY.fixtures += 1
    return check_repos(repos, where=f" (made by the fixture {fixture})")


def check_repos(repos: Iterable[Governed], tally: Tally = TALLY, where: str = "") -> int:
    """Simulate every decision record of `repos`, counting in `tally`; raise
    AssertionError naming each evaluation that does not reproduce (repository, SHA and
    the command that shows it). Returns how many were replayed."""
    problems, replayed = [], 0
    for store_url, repo_id in repos:
        for record, simulation in simulations(store_url, repo_id):
            tally.records += 1
            show = f"governor --store {store_url} simulate {simulation.repo} {simulation.sha}"
            for evaluation, s in zip(record.evaluations, simulation.evaluations, strict=True):
                problem = _problem(record.sha, evaluation, s, tally)
                if problem is None:
                    replayed += s.result == "reproduced"
                else:
                    problems.append(
                        f"{simulation.repo} {simulation.sha} {s.trigger} {s.recorded.outcome} "
                        f"{s.recorded.reason}: {problem}\n    to see it: {show}"
                    )
    tally.replayed += replayed
    if problems:
        raise AssertionError(
            f"stored evaluations that `governor simulate` does not reproduce{where}:\n"
            + "\n".join(problems)
        )
    return replayed


def _problem(sha: str, evaluation: Evaluation, s: Simulated, tally: Tally) -> str | None:
    """What is wrong with one simulated evaluation (None: nothing), counted in `tally`."""
    if s.result == "reproduced":
        tally.overridden += s.override is not None
        reason = s.rules.reason if s.rules is not None else "?"
        tally.by_reason[reason] = tally.by_reason.get(reason, 0) + 1
        return None
    if s.result == "not_reproducible" and s.why in NOT_THE_GATES:
        tally.not_the_gates += 1
        return _not_the_gates(sha, evaluation, s.why)
    differences = "; ".join(
        f"{d.field}: stored {d.stored!r}, replayed {d.replayed!r}" for d in s.differences
    )
    return ": ".join(part for part in (s.result, s.why, differences) if part)


def _not_the_gates(sha: str, evaluation: Evaluation, why: str) -> str | None:
    """What an evaluation the rules did not make must still be: a dispatch (ALLOW); a
    rollback, ALLOW `rollback` as `decide_rollback` words it from the stored inputs."""
    if evaluation.outcome != Outcome.ALLOW.value:
        return f"not reproducible ({why}), and not ALLOW though it records a dispatch"
    if why != NOT_REPRODUCIBLE_ROLLBACK:
        return None
    inputs = evaluation.inputs
    said = f"rollback to {sha[:7]} by {inputs.get('by')}: {inputs.get('why')}"
    forced = evaluation.detail.startswith(f"{said} (forced through a freeze: ")
    if evaluation.reason != Reason.ROLLBACK.value or evaluation.risk is not None:
        return f"a rollback recorded as {evaluation.reason} (risk {evaluation.risk})"
    if evaluation.detail != said and not forced:
        return f"a rollback whose detail {evaluation.detail!r} is not {said!r}"
    if forced != (inputs.get("forced") is True):
        return f"a rollback forced {forced} by its detail, {inputs.get('forced')} by its inputs"
    return None


def check_tally() -> None:
    if TALLY.tests >= MIN_TESTS_FOR_TALLY and TALLY.replayed < TALLY.tests // 2:
        raise AssertionError(f"too little was replayed to mean anything: {TALLY.line()}")
