"""The operator docs name every code the governor answers with: a code added without its
documentation fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
from governor.decision import Reason
from governor.flows.reconcile import Action

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_has_its_section(reason: Reason) -> None:
    assert f"## `{reason.value}`" in (DOCS / "reasons.md").read_text()


@pytest.mark.parametrize("action", list(Action))
def test_every_reconcile_action_is_documented(action: Action) -> None:
    assert f"`{action.value}`" in (DOCS / "reconcile.md").read_text()
