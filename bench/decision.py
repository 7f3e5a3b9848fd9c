"""Decisions per second for a 300-file diff against 50 patterns, against pathspec alone.

The decision path is what the governor runs per evaluation: classify every changed path
(`risk.assess`) and apply the rules (`policy.decide`). The baseline is the bare pathspec
matching of the same paths against the same compiled patterns, the part no
implementation can skip. Both are timed in the same run, interleaved; medians.

    .venv/bin/python -m bench.decision
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from datetime import UTC, datetime

from governor.decision import DecisionInputs, decide
from governor.policy import Policy, parse_policy
from governor.risk import ChangedFile, assess
from governor.state import new_state

HIGH = [f"**/critical{i}/**" for i in range(20)] + [
    ".github/workflows/**", "infra/**", "**/migrations/**", "*.lock", "go.sum",
]  # fmt: skip
MEDIUM = [f"**/*.cfg{i}" for i in range(20)] + [
    "package.json", "requirements*.txt", "pyproject.toml", "Dockerfile", "**/Dockerfile",
]  # fmt: skip


def make_policy() -> Policy:
    lines = ["deploy_workflow: deploy.yml", "high_risk_paths:"]
    lines += [f"  - '{p}'" for p in HIGH]
    lines += ["medium_risk_paths:"] + [f"  - '{p}'" for p in MEDIUM]
    parsed = parse_policy("\n".join(lines))
    assert isinstance(parsed, Policy)
    return parsed


def make_diff(n: int) -> list[ChangedFile]:
    files = [ChangedFile(f"services/svc{i % 12}/src/module{i}/file{i}.py") for i in range(n - 3)]
    files.append(ChangedFile("package.json"))
    files.append(ChangedFile("web/Dockerfile"))
    files.append(ChangedFile("src/new.py", "renamed", previous_filename="src/old.py"))
    return files


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=50)
    args = parser.parse_args(argv)

    policy = make_policy()
    files = make_diff(args.files)
    paths = [f.filename for f in files] + [
        f.previous_filename for f in files if f.previous_filename
    ]
    state = new_state(1, "octo/app").model_copy(update={"production_sha": "c" * 40})
    now = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
    high, medium = policy.high_risk_spec, policy.medium_risk_spec

    def decision_path() -> None:
        risk = assess(policy, files, complete=True)
        decide(DecisionInputs("a" * 40, policy, state, risk, False, (), now))

    def bare_matching() -> None:
        for path in paths:
            high.match_file(path)
            medium.match_file(path)

    decision_path()  # compile and warm caches outside the timing
    bare_runs, decision_runs = [], []
    for _ in range(args.repeat):
        bare_runs.append(
            min(timeit.repeat(bare_matching, number=args.number, repeat=3)) / args.number
        )
        decision_runs.append(
            min(timeit.repeat(decision_path, number=args.number, repeat=3)) / args.number
        )
    bare, decision = statistics.median(bare_runs), statistics.median(decision_runs)
    ratio = decision / bare
    print(
        f"decision path: {len(paths)} paths x {len(HIGH) + len(MEDIUM)} patterns, "
        f"median of {args.repeat}"
    )
    print(f"{'':22} {'per call ms':>12} {'per second':>11}")
    print(f"{'pathspec alone':22} {bare * 1000:12.3f} {1 / bare:11.0f}")
    print(f"{'assess + decide':22} {decision * 1000:12.3f} {1 / decision:11.0f}")
    print(f"decision / pathspec: {ratio:.2f}x")
    return {"bare_s": bare, "decision_s": decision, "ratio": ratio}


if __name__ == "__main__":
    main()
