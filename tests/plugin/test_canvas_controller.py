"""The canvas jobs through the controller, offscreen, against the real tiny backend: the requests go out
built from what the document side read, the jobs run, and the result layers come back at the window's
size (Krita's side of it is tested in tests/krita/test_krita_canvas.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

import pytest

from layerfusion.canvas_jobs import CanvasSource, layer_window, object_window
from layerfusion.targets import UserError
from layerfusion.wire import protocol

from tests.plugin.test_docker import RecordingDocuments, finished_jobs, make

DOC_W, DOC_H = 200, 120


def canvas(w, h):
    return bytes((x * 3) % 256 if c < 3 else 255 for y in range(h) for x in range(w) for c in range(4))


def layer(w, h, x0, y0, side):
    out = bytearray(w * h * 4)
    for y in range(y0, y0 + side):
        for x in range(x0, x0 + side):
            out[(y * w + x) * 4 : (y * w + x) * 4 + 4] = bytes((40, 60, 200, 255))
    return bytes(out)


@dataclass
class CanvasDocuments(RecordingDocuments):
    canvas_inserted: List[Dict[str, Any]] = field(default_factory=list)
    sources: List[CanvasSource] = field(default_factory=list)
    selection: Any = (60, 30, 48, 40)
    refuse: str = ""

    def canvas_source(self, kind, target_pixels, blend_layers, nodes=None):
        if self.refuse:
            raise UserError(self.refuse)
        if kind == "add_foreground":
            w = object_window(DOC_W, DOC_H, self.selection, target_pixels)
            uploads = [("background", canvas(w.width, w.height), False, "")]
        else:
            w = layer_window(DOC_W, DOC_H, None, target_pixels)
            uploads = [("foreground", layer(w.width, w.height, 20, 20, 40), True, "a red box")]
            if kind == "harmonize":
                uploads = [("background", canvas(w.width, w.height), False, "")] + uploads
                uploads.append(("foreground", layer(w.width, w.height, 100, 50, 30), True, "Paint Layer 3"))
        source = CanvasSource(kind, "doc", w, uploads, "anchor", blend_layers)
        self.sources.append(source)
        return source

    def insert_canvas(self, source, layers, params, job_id):
        self.canvas_inserted.append({"source": source, "layers": layers, "params": params, "job_id": job_id})
        return job_id


def run_kind(qapp, url, spin, kind, **settings):
    panel, controller, docs, _ = make(qapp, url, docs=CanvasDocuments(), target_pixels=96 * 64, **settings)
    done = finished_jobs(controller)
    assert controller.canvas.start(kind)
    spin(lambda: bool(done))
    controller.shutdown()
    return panel, docs, done[0]


@pytest.mark.parametrize("kind, blend_layers, names", [
    ("add_foreground", True, {"foreground", "blend"} | set(protocol.LIGHT_NAMES)),
    ("add_background", False, {"background", "blend"}),
    ("harmonize", True, {"blend"} | set(protocol.LIGHT_NAMES)),
])
def test_canvas_job_runs_and_its_layers_come_back_at_window_size(qapp, live_backend, spin, kind, blend_layers,
                                                                   names):
    panel, docs, outcome = run_kind(qapp, live_backend.url, spin, kind, blend_layers=blend_layers)
    assert outcome.state == "done", panel.message.text()
    assert outcome.kind == kind
    [insert] = docs.canvas_inserted
    w = insert["source"].window
    assert set(insert["layers"]) == names
    for data in insert["layers"].values():
        assert len(data) == w.width * w.height * 4  # scaled back from the sent size
    assert insert["params"]["seed"] == 11 and insert["params"]["blend_layers"] is blend_layers
    assert not panel.message.property("error") and panel.message.text().startswith("Added")
    if kind == "add_foreground":
        assert insert["params"]["target"] == dict(zip(("x", "y", "width", "height"), w.target))
        assert len(set(insert["layers"]["foreground"][3::4])) > 1  # transparency around the object
    if kind == "harmonize":
        assert [f["prompt"] for f in insert["params"]["foregrounds"]] == ["a red box", ""]


def test_canvas_refusals_are_shown_and_nothing_is_sent(qapp, live_backend, spin):
    panel, controller, docs, _ = make(qapp, live_backend.url, docs=CanvasDocuments(refuse="Select a layer."))
    assert not controller.canvas.start("harmonize")
    assert panel.message.text() == "Select a layer." and panel.message.property("error")
    panel.foreground.setPlainText("")
    assert not controller.canvas.start("add_foreground")
    assert "foreground prompt" in panel.message.text()
    assert not controller.runs and not docs.sources[:1]
    controller.shutdown()


def test_buttons_and_blend_as_layers_setting(qapp, live_backend, spin):
    panel, controller, docs, saved = make(qapp, live_backend.url, docs=CanvasDocuments(), target_pixels=96 * 64)
    panel.blend_layers.setChecked(True)
    assert saved[-1].blend_layers and panel.values().blend_layers
    done = finished_jobs(controller)
    panel.canvas_buttons["add_foreground"].click()
    spin(lambda: bool(done))
    assert docs.sources[0].kind == "add_foreground" and docs.sources[0].blend_layers
    controller.shutdown()


def test_generate_with_blend_as_layers_brings_the_light_layers(qapp, live_backend, spin):
    from layerfusion.targets import layer_plan

    panel, controller, docs, _ = make(qapp, live_backend.url, blend_layers=True)
    done = finished_jobs(controller)
    panel.generate.click()
    spin(lambda: bool(done))
    assert done[0].state == "done", panel.message.text()
    [insert] = docs.inserted
    assert set(insert["layers"]) == {"foreground", "background", "blend"} | set(protocol.LIGHT_NAMES)
    assert insert["params"]["blend_layers"] is True
    assert [name for _r, name, _v in layer_plan(insert["layers"])] == [
        "Background", "Shadows", "Light", "Foreground", "Foreground shadows", "Foreground light", "Blend"]
    controller.shutdown()


def test_generate_without_the_generative_blend_asks_for_no_light_layers(qapp, live_backend, spin):
    panel, controller, docs, _ = make(qapp, live_backend.url, blend_layers=True, blend="alpha")
    done = finished_jobs(controller)
    panel.generate.click()
    spin(lambda: bool(done))
    assert done[0].state == "done", panel.message.text()
    assert set(docs.inserted[0]["layers"]) == {"foreground", "background", "blend"}
    controller.shutdown()
