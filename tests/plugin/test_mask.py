"""The "Also insert the mask" option and Select foreground, offscreen, against the real tiny backend.

The document side is test_docker's recorder, extended to lay the group out the way layers.py does
(``targets.layer_plan``), so what Krita would be given is visible here without Krita.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List

from layerfusion.pixels import decode_png, png_to_bgra
from layerfusion.targets import MASK, UserError, layer_plan

from tests.plugin.test_docker import H, RecordingDocuments, W, finished_jobs, make

LAYERS = {"foreground", "background", "blend"}


@dataclass
class GroupDocuments(RecordingDocuments):
    groups: List[List[Any]] = field(default_factory=list)  # per insertion: (name, visible, bytes), bottom first
    selections: int = 0
    select_error: str = ""

    def insert(self, target, layers, params, job_id):
        self.groups.append([(name, visible, layers[role]) for role, name, visible in layer_plan(layers)])
        return super().insert(target, layers, params, job_id)

    def select_foreground(self):
        if self.select_error:
            raise UserError(self.select_error)
        self.selections += 1


def layout(group):
    return [(name, visible) for name, visible, _ in group]


def test_mask_option_fetches_the_hard_mask_and_inserts_a_hidden_mask_layer(qapp, live_backend, spin):
    panel, controller, docs, _ = make(qapp, live_backend.url, docs=GroupDocuments(), insert_mask=True)
    assert panel.insert_mask.isChecked()
    done = finished_jobs(controller)
    panel.generate.click()
    spin(lambda: bool(done))
    assert done[0].state == "done", panel.message.text()
    assert set(done[0].images) == LAYERS | {MASK}  # of the five maps, the hard mask only
    png = done[0].images[MASK]
    assert decode_png(png).isGrayscale() and (decode_png(png).width(), decode_png(png).height()) == (128, 64)
    [group] = docs.groups
    assert layout(group) == [("Background", True), ("Mask", False), ("Foreground", True), ("Blend", True)]
    mask = group[1][2]
    assert len(mask) == W * H * 4  # scaled back to the canvas rectangle like the other layers
    assert mask == png_to_bgra(png, W, H)
    assert set(mask[3::4]) == {255}  # opaque grey: B = G = R = the mask value
    assert mask[0::4] == mask[1::4] == mask[2::4]
    assert "Inserted" in panel.message.text()
    controller.shutdown()


def test_without_the_option_no_mask_is_fetched_or_inserted(qapp, live_backend, spin):
    panel, controller, docs, saved = make(qapp, live_backend.url, docs=GroupDocuments())
    assert not panel.insert_mask.isChecked() and not panel.values().insert_mask
    done = finished_jobs(controller)
    panel.generate.click()
    spin(lambda: bool(done))
    assert done[0].state == "done", panel.message.text()
    assert set(done[0].images) == LAYERS
    assert layout(docs.groups[0]) == [("Background", True), ("Foreground", True), ("Blend", True)]
    # Turned on later: inserting that result again from the history fetches its mask too.
    panel.insert_mask.setChecked(True)
    assert saved[-1].insert_mask
    spin(lambda: panel.history.count() >= 1)
    panel.reinsert_requested.emit(panel.history.item(0).data(0x0100))
    spin(lambda: len(docs.groups) == 2)
    assert [name for name, _ in layout(docs.groups[1])] == ["Background", "Mask", "Foreground", "Blend"]
    # And off again: the cached mask stays out.
    panel.insert_mask.setChecked(False)
    panel.reinsert_requested.emit(panel.history.item(0).data(0x0100))
    spin(lambda: len(docs.groups) == 3)
    assert "Mask" not in [name for name, _ in layout(docs.groups[2])]
    controller.shutdown()


def test_select_foreground_button_and_its_plain_message(qapp, live_backend):
    panel, controller, docs, _ = make(qapp, live_backend.url, docs=GroupDocuments())
    panel.select_foreground.click()
    assert docs.selections == 1
    assert "Selected" in panel.message.text() and not panel.message.property("error")
    docs.select_error = "Select a LayerFusion group (or one of its layers) or a paint layer first."
    assert controller.select_foreground() is False
    assert panel.message.text() == docs.select_error and panel.message.property("error")
    controller.shutdown()
