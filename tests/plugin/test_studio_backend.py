"""The docker against a studio backend (``serve --cluster``, its own two-worker Ray): no difference.

The same controller and recorder as test_docker.py; the server runs its jobs on Ray actors.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.plugin.test_docker import finished_jobs, make
from tests.support.backend_process import BackendProcess

pytest.importorskip("ray", reason="Ray is not installed (python3 install.py --cluster installs it)")


@pytest.fixture(scope="module")
def studio() -> Iterator[BackendProcess]:
    backend = BackendProcess(output_dir=Path(tempfile.mkdtemp(prefix="studio-")),
                             extra_args=("--cluster", "--cluster-workers", "2", "--torch-threads", "1"))
    backend.start()
    try:
        yield backend
    finally:
        assert backend.stop() == 0, backend.log_tail()


def test_generate_reblend_and_cancel_through_a_studio_backend(qapp, studio, spin):
    panel, controller, docs, _ = make(qapp, studio.url)
    spin(lambda: panel.connection.property("state") == "connected")
    done = finished_jobs(controller)
    panel.generate.click()
    spin(lambda: len(done) == 1)
    assert done[0].state == "done", panel.message.text()
    [insert] = docs.inserted
    assert set(insert["layers"]) == {"foreground", "background", "blend"}
    assert insert["params"]["worker"].startswith("worker-")  # it ran on a Ray worker
    panel.reblend.click()
    spin(lambda: len(done) == 2)
    assert done[1].state == "done" and len(docs.replaced) == 1, panel.message.text()

    long_panel, long_controller, long_docs, _ = make(qapp, studio.url, steps=200)
    long_done = finished_jobs(long_controller)
    long_panel.progress.valueChanged.connect(
        lambda v: v >= 1 and long_panel.cancel.isEnabled() and long_panel.cancel.click())
    long_panel.generate.click()
    spin(lambda: bool(long_done))
    assert long_done[0].state == "cancelled" and long_docs.inserted == []
    controller.shutdown()
    long_controller.shutdown()
