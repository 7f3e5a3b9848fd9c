"""Headless Chromium from Debian's `chromium` package, driven by Playwright (no browser
download: `executable_path` points at the system binary), with a fresh profile each time."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
INSTALL_HINT = (
    f"{CHROMIUM} is missing: the decision page is checked in headless Chromium. "
    "`make test` installs it as root (scripts/ensure-chromium); otherwise "
    "`sudo apt-get install -y chromium`, or set CHROMIUM=/path/to/chromium."
)


@contextmanager
def chromium(**context_options: Any) -> Iterator[Any]:
    """A Playwright browser context on the system Chromium, with a new user data dir."""
    if not CHROMIUM.exists():
        raise RuntimeError(INSTALL_HINT)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, sync_playwright() as p:
        # Playwright takes the profile directory itself (it refuses --user-data-dir in args).
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=list(FLAGS),
            **context_options,
        )
        try:
            yield context
        finally:
            context.close()
