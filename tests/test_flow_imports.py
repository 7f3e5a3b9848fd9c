"""A flow's module is imported with the first event that needs it (flows/delivery.py):
functions/main.py loads none, and each event loads its own flow only. Fresh interpreters,
so nothing imported by other tests counts."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.functions_server import REPO_ROOT

FLOWS = (
    "governor.flows.verification",
    "governor.flows.deploy_outcome",
    "governor.flows.approval",
    "governor.flows.policy_review",
    "governor.flows.protection_rule",
    "governor.flows.reconcile",
)
_LOADED = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("main", {main!r})
module = importlib.util.module_from_spec(spec)
sys.modules["main"] = module
spec.loader.exec_module(module)
{then}
print(json.dumps(sorted(name for name in {flows!r} if name in sys.modules)))
"""


def _flows_loaded(then: str = "") -> list[str]:
    code = _LOADED.format(main=str(REPO_ROOT / "functions" / "main.py"), then=then, flows=FLOWS)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(out.stdout.splitlines()[-1])
    return loaded


def test_importing_the_functions_loads_no_flow() -> None:
    assert _flows_loaded() == []


def test_a_deploy_outcome_and_a_policy_review_do_not_load_the_verification_flow() -> None:
    # What `route` imports for those two events, and nothing of the others.
    loaded = _flows_loaded("from governor.flows import deploy_outcome, policy_review  # noqa: F401")
    assert loaded == ["governor.flows.deploy_outcome", "governor.flows.policy_review"]
