"""`context.alongside`: two effects that need nothing of each other, made together."""

from __future__ import annotations

import threading
import time

import pytest
from governor.flows.context import alongside


def test_both_run_at_once_and_the_answer_is_here_s() -> None:
    there_started = threading.Event()

    def here() -> str:
        # Only returns once `there` runs: they overlap, or this times out.
        assert there_started.wait(timeout=10), "`there` did not start while `here` ran"
        return "here"

    assert alongside(here, there_started.set) == "here"


def test_an_error_there_is_raised_once_here_is_done() -> None:
    done_here = []

    def there() -> None:
        raise LookupError("there failed")

    with pytest.raises(LookupError, match="there failed"):
        alongside(lambda: done_here.append(True), there)
    assert done_here == [True]


def test_an_error_here_wins_and_there_is_still_waited_for() -> None:
    release, finished = threading.Event(), threading.Event()

    def there() -> None:
        release.wait(timeout=10)
        time.sleep(0.2)  # still busy when `here` has failed: not waiting would show
        finished.set()
        raise LookupError("there failed")

    def here() -> None:
        release.set()
        raise ValueError("here failed")

    with pytest.raises(ValueError, match="here failed"):
        alongside(here, there)
    assert finished.is_set()
