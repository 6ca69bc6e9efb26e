"""Fixtures for the plugin's offscreen tests: a Qt application, a real tiny backend, the package path."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.plugin.launch import REPO, Backend, start_backend

sys.path.insert(0, str(REPO / "krita_plugin"))


@pytest.fixture(scope="session")
def qapp():
    from PyQt5.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(["layerfusion-tests"])
    yield app


@pytest.fixture(scope="session")
def backend(tmp_path_factory: pytest.TempPathFactory, layerfusion_cache: str) -> Iterator[Backend]:
    proc = start_backend(tmp_path_factory.mktemp("backend"))
    yield proc
    proc.stop()


def wait_for(app, condition: Callable[[], bool], limit: float = 120.0) -> None:
    """Spin the Qt event loop until ``condition`` holds; the limit only guards against a hang."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached while spinning the event loop")
        app.processEvents()
        time.sleep(0.005)


@pytest.fixture
def spin(qapp):
    return lambda condition, limit=120.0: wait_for(qapp, condition, limit)
