"""Fixtures for the tests inside real Krita: skip only when Krita is not installed."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.krita.kritarun import kritarunner
from tests.plugin.launch import Backend, start_backend


def pytest_collection_modifyitems(items):
    if kritarunner() is None:
        skip = pytest.mark.skip(reason="Krita is not installed (no kritarunner on PATH); CI installs it")
        for item in items:
            if "krita" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def krita_backend(tmp_path_factory: pytest.TempPathFactory, layerfusion_cache: str) -> Iterator[Backend]:
    proc = start_backend(tmp_path_factory.mktemp("krita-backend"))
    yield proc
    proc.stop()
