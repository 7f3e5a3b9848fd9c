"""safe_text: what reaches a terminal from attacker-chosen strings."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime

import pytest
from governor.commands.jsonify import to_json
from governor.commands.safe import safe_text
from governor.commands.status import Held


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("src/app.py", "src/app.py"),
        ("infra/\x1b[31mred\x1b[0m.tf", "infra/?[31mred?[0m.tf"),  # ANSI colour
        ("a\nb\rc\td", "a?b?c?d"),  # one line stays one line
        ("title\x1b]0;pwned\x07", "title?]0;pwned?"),  # OSC: set the window title
        ("x\x9b31m", "x?31m"),  # C1 CSI, one byte in some terminals
        ("\x00\x7f", "??"),  # NUL and DEL
        ("evil\u202etxt.exe", "evil?txt.exe"),  # right-to-left override
        ("zero\u200bwidth", "zero?width"),
        ("line\u2028sep\u2029par", "line?sep?par"),
        ("ünïcödé ✓ 日本", "ünïcödé ✓ 日本"),  # printable text is left alone
        ("nbsp\u00a0kept", "nbsp\u00a0kept"),
        ("", ""),
    ],
)
def test_control_and_invisible_formatting_characters_become_question_marks(
    raw: str, shown: str
) -> None:
    assert safe_text(raw) == shown


def test_every_code_point_that_survives_is_printable_or_a_space() -> None:
    everything = "".join(chr(c) for c in range(0x3000) if not 0xD800 <= c <= 0xDFFF)
    survivors = set(safe_text(everything)) - {"?"}
    assert all(c.isprintable() or unicodedata.category(c) == "Zs" for c in survivors)
    assert not {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]} & survivors
    assert len(safe_text(everything)) == len(everything)  # replaced, never dropped


def test_json_keeps_the_raw_strings() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    held = Held("a" * 40, "x\x1b[2J", since, None, False, "d\n", "u", "docs", ())
    assert to_json(held)["reason"] == "x\x1b[2J"
    assert to_json(held)["since"] == "2026-01-01T00:00:00Z"
