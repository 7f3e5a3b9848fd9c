"""Text for a terminal from strings an attacker may choose (paths, branch names, reasons)."""

from __future__ import annotations

import unicodedata
from typing import Final

REPLACEMENT: Final = "?"
_UNSAFE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Control (C0, DEL, C1: ESC starts ANSI sequences), format (bidi overrides that reorder
what is shown, zero-width characters), surrogates, private use, unassigned, and line and
paragraph separators."""


def safe_text(text: str) -> str:
    """`text` with every control or invisible formatting character replaced by '?'.

    Nothing else is escaped: this is for a terminal, not for HTML. A newline or ESC inside
    a path becomes '?', so the line stays one line and no escape sequence reaches the
    terminal; the printable rest of the string is shown as it is.
    """
    if text.isprintable() and text.isascii():
        return text
    return "".join(
        REPLACEMENT if unicodedata.category(char) in _UNSAFE_CATEGORIES else char for char in text
    )
