"""Test-only fault injection: die at a named step boundary, as a killed instance dies.

The flows call `reached("<flow>.<boundary>")` between their steps. Nothing happens unless
the environment variable `GOVERNOR_CRASH_AT` names that point (read at every call, so
a test can set it per process); then the process ends at once with `os._exit`, without
unwinding: no `finally`, no claim released, no answer sent, exactly what a SIGKILL or an
evicted instance leaves behind.

With `GOVERNOR_CRASH_ONCE_FILE` set too, only the first process to reach the point dies:
it creates that file (atomically, O_EXCL) before dying, and every later arrival finds it
and goes on. That lets the instance that replaces the dead one (gunicorn restarts its
worker) finish the work when it is delivered again.

tests/test_faults.py uses this; docs/reliability.md lists the points. An operator never
sets either variable: a governor configured with them crashes on purpose.
"""

from __future__ import annotations

import os
from typing import Final

CRASH_AT: Final = "GOVERNOR_CRASH_AT"
CRASH_ONCE_FILE: Final = "GOVERNOR_CRASH_ONCE_FILE"
EXIT_CODE: Final = 86
"""The exit status of a process that died at a crash point (distinct from a real error)."""


def reached(name: str) -> None:
    """Die here if `GOVERNOR_CRASH_AT` is `name` (once only, with `GOVERNOR_CRASH_ONCE_FILE`)."""
    if os.environ.get(CRASH_AT) != name:
        return
    once = os.environ.get(CRASH_ONCE_FILE)
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return  # died here once already: this attempt goes through
    os.write(2, f"governor: crash point {name} reached: exiting\n".encode())
    os._exit(EXIT_CODE)
