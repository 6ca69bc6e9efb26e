"""Shared, expensive-to-build objects for the model-loading tests."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sdxl_meta():
    """SDXL's four modules at full size on the meta device (shapes only, built from the shipped configs)."""
    from backend.models import single_file

    return single_file.meta_modules(single_file.SDXL_CONFIG_DIR)


@pytest.fixture(scope="session")
def tiny_files():
    from backend.models.tiny_files import ensure_tiny_files

    return ensure_tiny_files()
