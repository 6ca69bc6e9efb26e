"""Fixtures for the tests inside real Krita: skip only when Krita is not installed."""
from __future__ import annotations

import pytest

from tests.krita.kritarun import kritarunner


def pytest_collection_modifyitems(items):
    if kritarunner() is None:
        skip = pytest.mark.skip(reason="Krita is not installed (no kritarunner on PATH); CI installs it")
        for item in items:
            if "krita" in item.keywords:
                item.add_marker(skip)

