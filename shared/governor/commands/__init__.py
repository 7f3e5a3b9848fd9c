"""The `governor` command's commands: the read-only ones, replay, and `operate` (approve,
rollback, freeze, degraded: the ones that change what the gate does).

Each command returns a typed result (frozen structs); `governor.cli` parses arguments,
calls the command and renders its result as text (`render`) or JSON (`jsonify`). Errors a
user can act on are raised as `CommandError`, with the exit status they mean.
"""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
"""Something failed or was not found (an unknown repository, a SHA without a record)."""
EXIT_USAGE: Final = 2
"""Bad arguments or configuration (argparse uses 2 as well)."""
EXIT_HELD: Final = 3
"""Held / not allowed: `status REPO --sha SHA` for a SHA not on its way to production,
`policy check --repo` for a file that relaxes the trusted policy."""
EXIT_POLICY_INVALID: Final = 4
"""`policy check`: the file cannot be used (the governor would hold `policy_invalid`)."""
EXIT_RULES_CHANGED: Final = 5
"""`simulate`: a stored evaluation is decided differently now, and it was decided under
another rules version (`decision.RULES_VERSION`): the rules changed, not a fault."""
EXIT_TEMPFAIL: Final = 75
"""Another governor write is in progress: retry (EX_TEMPFAIL)."""


class CommandError(Exception):
    """A failure to report in one line, with the exit status it means."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code
