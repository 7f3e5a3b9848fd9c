"""What unblocks a hold, from what the store keeps (its reason and `until`).

`messages.unblock_hint` wants a Decision and the policy; the store has the hold's reason
and end but not the policy, so the hint is the generic one ("approve it" rather than the
policy's label or command). Reason codes are API: docs/reasons.md has one section each.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from governor.decision import Decision, Outcome, Reason
from governor.messages import unblock_hint

REASONS_DOC: Final = "docs/reasons.md"


def reason_anchor(reason: str) -> str:
    """The section of docs/reasons.md about `reason` (GitHub's heading anchor)."""
    return f"{REASONS_DOC}#{reason}" if reason in _KNOWN else REASONS_DOC


def hold_hint(reason: str, until: datetime | None, detail: str = "") -> str:
    """One line on what clears a hold with this reason, without the policy at hand."""
    try:
        code = Reason(reason)
    except ValueError:
        return f"unknown reason '{reason}': see {REASONS_DOC}"
    hint = unblock_hint(Decision(Outcome.HOLD, code, None, detail, until), None)
    return hint or f"see {reason_anchor(reason)}"


_KNOWN: Final = frozenset(r.value for r in Reason)
