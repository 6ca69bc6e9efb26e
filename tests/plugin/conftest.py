"""Fixtures for the plugin's offscreen tests: a Qt application, a real tiny backend, the package path."""
from __future__ import annotations

import sys
import time
from typing import Callable

import pytest

from tests.plugin.launch import REPO

sys.path.insert(0, str(REPO / "krita_plugin"))


@pytest.fixture(scope="session")
def qapp():
    from layerfusion.qt import QApplication

    app = QApplication.instance() or QApplication(["layerfusion-tests"])
    yield app



# Generous: the limit only guards against a hang, and a loaded 2-core machine runs jobs slowly.
SPIN_LIMIT_S = 600.0


def wait_for(app, condition: Callable[[], bool], limit: float = SPIN_LIMIT_S) -> None:
    """Spin the Qt event loop until ``condition`` holds; the limit only guards against a hang."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached while spinning the event loop")
        app.processEvents()
        time.sleep(0.005)


@pytest.fixture
def spin(qapp):
    return lambda condition, limit=SPIN_LIMIT_S: wait_for(qapp, condition, limit)
