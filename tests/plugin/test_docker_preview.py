"""The docker's live view of a running job: the phase named on the progress bar, and the preview."""
from __future__ import annotations

from typing import List

from layerfusion.docker import Panel, progress_format
from layerfusion.pixels import encode_png
from layerfusion.qt import QColor, QImage

from tests.plugin.test_docker import finished_jobs, make


def test_the_bar_names_the_phase():
    assert progress_format(2, 6, "prior") == "Prior pass %v/%m"
    assert progress_format(3, 6, "denoise") == "Denoising %v/%m"
    assert progress_format(6, 6, "denoise") == "Decoding…"  # every step done: the server decodes
    assert progress_format(3, 6, "") == "Step %v/%m"  # an older server that does not say


def test_set_progress_shows_the_phase_text(qapp):
    panel = Panel()
    panel.set_progress(2, 6, "prior")
    assert panel.progress.text() == "Prior pass 2/6"
    panel.set_progress(4, 6, "denoise")
    assert panel.progress.text() == "Denoising 4/6"
    panel.set_running(False)
    assert panel.progress.value() == 0


def png(w, h, colour=(200, 30, 30)):
    image = QImage(w, h, QImage.Format.Format_ARGB32)
    image.fill(QColor(*colour))
    return encode_png(image)


def test_preview_shows_a_png_at_the_panel_width_and_goes_with_the_job(qapp):
    panel = Panel()
    panel.resize(260, 700)
    panel.show()
    qapp.processEvents()
    view = panel.preview
    assert view.isHidden()  # nothing to show before a job sends one
    assert not view.show_png(b"not a png")
    assert view.isHidden() and view.frames == 0
    assert view.show_png(png(256, 128))
    qapp.processEvents()
    assert view.isVisibleTo(panel) and view.frames == 1
    pixmap = view.pixmap()
    assert 0 < pixmap.width() <= view.width() and abs(pixmap.width() / pixmap.height() - 2) < 0.05
    assert view.geometry().right() <= panel.width()
    panel.set_running(False)  # the job ended: its preview goes
    assert view.isHidden()


def test_a_generation_streams_previews_into_the_docker(qapp, live_backend, spin):
    panel, controller, _docs, _ = make(qapp, live_backend.url, steps=4)
    done = finished_jobs(controller)
    texts: List[str] = []
    panel.progress.valueChanged.connect(lambda _v: texts.append(panel.progress.text()))
    panel.generate.click()
    spin(lambda: bool(done))
    assert done[0].state == "done", panel.message.text()
    assert panel.preview.frames >= 2  # the server's previews, one a step
    assert any(t.startswith("Prior pass") for t in texts) and any(t.startswith("Denoising") for t in texts)
    assert panel.preview.isHidden()  # gone with the job
    controller.shutdown()
