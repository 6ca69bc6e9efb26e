"""A local re-blend from the plugin: what moved, the request it sends, and that every pixel of the
Blend outside the server's crop stays exactly as it was (hand-computed values, then the live backend)."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from layerfusion import reblend_job
from layerfusion.local_blend import alpha_box, clip, crop, expand, kept_outside, paste_box, scaled, union
from layerfusion.pixels import encode_png, image_from_bgra, png_to_bgra
from layerfusion.settings import Settings
from layerfusion.targets import ReblendSource, Target
from layerfusion.wire import protocol

from tests.plugin.test_docker import H, RecordingDocuments, W, finished_jobs, make


def _layer(width: int, height: int, box=None, value: int = 200) -> bytes:
    """BGRA bytes, transparent except ``box`` (x, y, w, h), which is opaque ``value``."""
    data = bytearray(width * height * 4)
    if box is not None:
        x, y, w, h = box
        for row in range(y, y + h):
            data[(row * width + x) * 4:(row * width + x + w) * 4] = bytes([value, value, value, 255]) * w
    return bytes(data)


def test_the_visible_box_of_a_layer():
    assert alpha_box(_layer(10, 8, (3, 2, 4, 5)), 10, 8) == (3, 2, 4, 5)
    assert alpha_box(_layer(10, 8, (0, 7, 10, 1)), 10, 8) == (0, 7, 10, 1)
    assert alpha_box(_layer(10, 8), 10, 8) is None
    two = bytearray(_layer(10, 8, (1, 1, 1, 1)))
    two[(6 * 10 + 8) * 4 + 3] = 1  # one faint pixel at (8, 6)
    assert alpha_box(bytes(two), 10, 8) == (1, 1, 8, 6)


def test_union_and_outward_scaling():
    assert union((10, 20, 30, 40), (25, 5, 30, 10)) == (10, 5, 45, 55)
    # x 10..40 at 1.28 = 12.8..51.2 -> 12..52; y 5..60 at 0.5 = 2.5..30 -> 2..30.
    assert scaled((10, 5, 30, 55), 1.28, 0.5, 128, 64) == (12, 2, 40, 28)
    assert scaled((90, 50, 10, 10), 1.28, 1.0667, 128, 64) == (115, 53, 13, 11)  # clipped to 128 x 64


def test_paste_keeps_everything_outside_the_box():
    previous, new = _layer(6, 4, (0, 0, 6, 4), 10), _layer(6, 4, (0, 0, 6, 4), 90)
    out = paste_box(previous, new, 6, (2, 1, 3, 2))
    inside = {(x, y) for x in range(2, 5) for y in range(1, 3)}
    for y in range(4):
        for x in range(6):
            assert out[(y * 6 + x) * 4] == (90 if (x, y) in inside else 10), (x, y)


def test_clip_keeps_the_part_inside():
    assert clip((3, 2, 4, 5), 10, 8) == (3, 2, 4, 5)
    assert clip((-2, 6, 5, 5), 10, 8) == (0, 6, 3, 2)  # x -2..3 -> 0..3, y 6..11 -> 6..8
    assert clip((12, -9, 4, 4), 10, 8) == (10, 0, 0, 0)  # outside: nothing


def test_expand_places_a_patch_in_a_transparent_image():
    patch = bytes(range(2 * 3 * 4))  # 2 x 3 pixels
    out = expand(patch, (1, 2, 2, 3), 4, 6)
    assert len(out) == 4 * 6 * 4
    for y in range(6):
        for x in range(4):
            pixel = out[(y * 4 + x) * 4:(y * 4 + x + 1) * 4]
            if 1 <= x < 3 and 2 <= y < 5:
                i = ((y - 2) * 2 + x - 1) * 4
                assert pixel == patch[i:i + 4], (x, y)
            else:
                assert pixel == bytes(4), (x, y)
    whole = _layer(4, 6, (0, 0, 4, 6))
    assert expand(whole, (0, 0, 4, 6), 4, 6) is whole  # already the whole image: no copy


def test_crop_takes_a_box_out_and_expand_puts_it_back():
    data = bytes(range(4 * 3 * 4))  # 4 x 3 pixels, every byte its own index
    assert crop(data, 4, (1, 1, 2, 2)) == data[20:28] + data[36:44]  # rows 1 and 2, pixels 1..2
    assert crop(data, 4, (0, 0, 4, 3)) == data
    layer = _layer(10, 8, (3, 2, 4, 5), 77)
    assert expand(crop(layer, 10, (3, 2, 4, 5)), (3, 2, 4, 5), 10, 8) == layer


def test_the_upload_sends_the_expanded_foreground_and_carried_pngs_as_they_are(qapp):
    target = Target("doc", 0, 0, 128, 64, 128, 64)  # the generation size: no scaling, pixels compare exactly
    patch = _layer(8, 4, (0, 0, 8, 4), 120)
    background = _layer(128, 64, (0, 0, 128, 64), 60)
    carried = base64.b64encode(encode_png(image_from_bgra(_layer(128, 64, (0, 0, 128, 64), 99), 128, 64))).decode()
    source = ReblendSource("doc", "g", target, patch, background, {"foreground_prompt": "a cup", "seed": 4},
                           foreground_box=(10, 6, 8, 4), changed=(2, 6, 16, 4), foreground_at=(10, 6, 8, 4),
                           previous_blend=background)
    pngs, body = reblend_job.upload(source, Settings(fast=False, steps=3), {"previous_blend": carried})
    assert body.kind == "reblend"
    sent = json.loads(body.json)
    request = protocol.parse_job_request(sent)
    assert request.previous_blend_png == pngs["previous_blend"] == carried  # not encoded again
    assert png_to_bgra(base64.b64decode(pngs["foreground"]), 128, 64) == expand(patch, (10, 6, 8, 4), 128, 64)
    assert png_to_bgra(base64.b64decode(pngs["background"]), 128, 64) == background
    assert sent["foreground_png"] == pngs["foreground"] and sent["background_png"] == pngs["background"]
    assert (sent["foreground_prompt"], sent["seed"], sent["steps"]) == ("a cup", 4, 3)
    assert sent["changed"] == {"x": 2, "y": 6, "width": 16, "height": 4}
    pngs, body = reblend_job.upload(source, Settings(local_reblend=False), {})
    assert set(pngs) == {"foreground", "background"} and "changed" not in json.loads(body.json)


def test_kept_outside_maps_the_server_crop_to_the_group():
    target = Target("doc", 0, 0, 100, 50, 200, 100)
    source = ReblendSource("doc", "g", target, b"", b"", {}, previous_blend=_layer(100, 50, (0, 0, 100, 50), 10))
    new = {"blend": _layer(100, 50, (0, 0, 100, 50), 90)}
    # The crop (40, 20) 64 x 32 at generation size is (20, 10) 32 x 16 in the group.
    out = kept_outside(source, {"local_region": [40, 20, 64, 32]}, new)["blend"]
    assert out[(10 * 100 + 20) * 4] == 90 and out[(25 * 100 + 51) * 4] == 90
    assert out[(9 * 100 + 20) * 4] == 10 and out[(10 * 100 + 52) * 4] == 10 and out[(26 * 100 + 30) * 4] == 10
    assert kept_outside(source, {}, new) is new  # a full re-blend: the server's blend as it is


# --- against the live backend ---------------------------------------------------------------------------

PREVIOUS = 37  # a grey no tiny-model blend paints everywhere


@dataclass
class MovedDocuments(RecordingDocuments):
    def reblend_source(self) -> ReblendSource:
        last = self.inserted[-1]
        fg = last["layers"]["foreground"]
        self.read = ReblendSource("doc", "group-1", Target("doc", 5, 7, W, H, 128, 64), fg,
                                  last["layers"]["background"], last["params"], foreground_box=(50, 20, 20, 20),
                                  changed=(30, 20, 40, 20), previous_blend=_layer(W, H, (0, 0, W, H), PREVIOUS))
        return self.read


def test_a_moved_foreground_is_reblended_locally_and_the_rest_is_kept(qapp, live_backend, spin):
    panel, controller, docs, _ = make(qapp, live_backend.url, docs=MovedDocuments())
    done = finished_jobs(controller)
    panel.generate.click()
    spin(lambda: len(done) == 1)
    panel.reblend.click()
    spin(lambda: len(done) == 2)
    outcome = done[1]
    assert outcome.state == "done", panel.message.text()
    x, y, w, h = outcome.params["local_region"]
    # changed (30, 20) 40 x 20 in the group is (38, 21) 52 x 22 at 128 x 64 (outward); the server adds
    # 16 px and rounds to 32 px cells: 84 -> 96 wide, 54 -> 64 high (the whole height).
    assert outcome.params["changed"] == {"x": 38, "y": 21, "width": 52, "height": 22}
    assert (w, h) == (96, 64) and y == 0
    box = scaled((x, y, w, h), W / 128, H / 64, W, H)
    blend = docs.replaced[0]
    outside = [blend[(row * W + col) * 4:(row * W + col) * 4 + 4] for row in range(H) for col in range(W)
               if not (box[0] <= col < box[0] + box[2] and box[1] <= row < box[1] + box[3])]
    assert outside and all(p == bytes([PREVIOUS] * 3 + [255]) for p in outside)
    assert blend != _layer(W, H, (0, 0, W, H), PREVIOUS)  # the crop got a new blend
    assert panel.message.text().startswith("Blend regenerated around the move in ")
    assert set(docs.read.pngs) == {"background", "previous_blend"}  # kept for the drag's next read
    controller.shutdown()


def test_reblend_everything_when_local_is_off(qapp, live_backend, spin):
    panel, controller, docs, _ = make(qapp, live_backend.url, docs=MovedDocuments(), local_reblend=False)
    done = finished_jobs(controller)
    panel.generate.click()
    spin(lambda: len(done) == 1)
    panel.reblend.click()
    spin(lambda: len(done) == 2)
    assert done[1].state == "done" and "local_region" not in done[1].params and "changed" not in done[1].params
    assert docs.replaced[0][:4] != bytes([PREVIOUS] * 3 + [255])
    assert panel.message.text().startswith("Blend regenerated everywhere in ")
    controller.shutdown()
