"""The `governor` command in-process, as the CLI tests call it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from governor.cli import main


@dataclass
class Cli:
    """`governor` in-process: exit code, parsed `--json` output (None if none), stderr."""

    capsys: pytest.CaptureFixture[str]

    def __call__(self, *args: str) -> tuple[int, Any, str]:
        code = main(["--json", *args])
        out, err = self.capsys.readouterr()
        return code, json.loads(out) if out.strip() else None, err

    def text(self, *args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = self.capsys.readouterr()
        return code, out, err
