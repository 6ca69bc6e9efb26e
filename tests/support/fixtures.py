"""The ``live_backend`` fixture: one real backend subprocess (tiny model) per test session.

Interface for every test that needs a server: ``live_backend.url`` (``http://127.0.0.1:PORT``),
``live_backend.output_dir`` (its results folder), ``live_backend.token`` (None: no auth).
"""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.support.backend_process import BackendProcess


@pytest.fixture(scope="session")
def live_backend(
    tmp_path_factory: pytest.TempPathFactory, layerfusion_cache: str
) -> Iterator[BackendProcess]:
    # A deep queue: the concurrency test puts 50 jobs in at once.
    backend = BackendProcess(
        output_dir=tmp_path_factory.mktemp("backend-output"), extra_args=("--max-queue", "64")
    )
    backend.start()
    try:
        yield backend
    finally:
        backend.stop()
