"""Test-wide set-up: no network, and one throw-away cache for the tiny model's files."""
from __future__ import annotations

import os

import pytest

# Nothing may reach for the Hugging Face hub at test time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["DIFFUSERS_OFFLINE"] = "1"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session", autouse=True)
def layerfusion_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """LAYERFUSION_CACHE for the session: the tiny model's files are written here once."""
    path = str(tmp_path_factory.mktemp("layerfusion-cache"))
    os.environ["LAYERFUSION_CACHE"] = path
    return path


# The real backend on loopback, shared by the server and plugin tests.
from tests.support.fixtures import live_backend  # noqa: E402,F401
