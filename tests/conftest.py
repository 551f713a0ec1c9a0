"""Shared test set-up: no daemon outlives its test."""

from __future__ import annotations

import pytest

from tests import e2e


@pytest.fixture(autouse=True)
def _reap_daemons():
    """Kill any `watchd run` a test started and left running (a failed assertion, say):
    an orphan would go on watching a reused temp path and confuse the next run."""
    yield
    while e2e.RUNNING:
        e2e.RUNNING.pop().kill()
