"""A local re-blend: the crop it denoises, the feathered seam, and that the rest of the previous blend
stays pixel for pixel (hand-computed values, then the tiny model)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from backend.pipeline.local_region import Box, crop_box, feather, margin_for, paste
from shared.fields import ProtocolError
from shared.protocol import parse_job_request
from tests.pipeline.test_given_layers import b64, painting, square_layer


def test_the_margin_scales_with_the_canvas():
    assert margin_for(1024, 768) == 64 and margin_for(2048, 512) == 128 and margin_for(128, 128) == 16


def test_the_crop_is_the_changed_region_plus_the_margin_on_the_grid():
    # 256 + 2 x 64 = 384 px, already a multiple of 32, centred on the region's centre 528.
    assert crop_box(Box(400, 400, 656, 656), 1024, 1024) == Box(336, 336, 720, 720)
    # 100 + 128 = 228 -> 256 wide and 50 + 128 = 178 -> 192 high, pushed inside at the corner.
    assert crop_box(Box(0, 0, 100, 50), 1024, 1024) == Box(0, 0, 256, 192)
    # Near the far edge: 40 + 128 = 168 -> 192 wide, ending at the canvas edge; 20 + 128 -> 160 high.
    assert crop_box(Box(980, 10, 1020, 30), 1024, 1024) == Box(832, 0, 1024, 160)
    # A region that needs more than the canvas gets the whole side.
    assert crop_box(Box(10, 10, 900, 100), 1024, 1024) == Box(0, 0, 1024, 224)
    assert crop_box(Box(0, 0, 10, 10), 64, 64) == Box(0, 0, 64, 64)


def test_the_feather_is_one_on_the_core_and_ramps_to_the_crop_edge():
    crop, changed = Box(336, 336, 720, 720), Box(400, 400, 656, 656)
    w = feather(crop, changed, 1024, 1024)
    assert w.shape == (384, 384)
    # The core is the changed region grown by half the gap: [368, 688); the ramps are 32 px long.
    row = w[192]
    assert row[0] == pytest.approx(0.5 / 32) and row[15] == pytest.approx(15.5 / 32)
    assert row[32] == 1.0 and row[351] == 1.0
    assert row[383] == pytest.approx(0.5 / 32) and row[352] == pytest.approx(31.5 / 32)
    assert w[0, 0] == pytest.approx((0.5 / 32) ** 2)
    # At the canvas's own edge there is nothing to blend into: no ramp there.
    corner = feather(Box(0, 0, 256, 192), Box(0, 0, 100, 50), 1024, 1024)
    assert corner[0, 0] == 1.0 and corner[0, 255] == pytest.approx(0.5 / 78)


def test_paste_keeps_every_pixel_the_weight_does_not_reach():
    previous = np.full((8, 10, 3), 100, np.uint8)
    new = np.full((4, 4, 3), 200, np.uint8)
    weight = np.array([[0, 0.5, 1, 0.25]] * 4, np.float32)
    out = paste(previous, new, Box(2, 3, 6, 7), weight)
    assert out[3, 2:6, 0].tolist() == [100, 150, 200, 125]
    outside = np.ones((8, 10), bool)
    outside[3:7, 2:6] = False
    assert (out[outside] == 100).all() and (previous == 100).all()


# --- on the tiny model --------------------------------------------------------------------------------

SIZE = 256


def _local_body(**extra):
    moved = square_layer(150, 40, side=40, size=SIZE)
    body = {"kind": "reblend", "foreground_prompt": "a red box", "background_prompt": "a meadow",
            "foreground_png": b64(moved), "background_png": b64(painting(SIZE)),
            "previous_blend_png": b64(painting(SIZE, seed=4)),
            # The box moved from (110, 40) to (150, 40): old and new bounds together.
            "changed": {"x": 110, "y": 40, "width": 80, "height": 40}, "strength": 0.6, "steps": 4, "seed": 2}
    body.update(extra)
    return body


def test_a_local_reblend_changes_the_crop_only(engine):
    result = engine.run(parse_job_request(_local_body()))
    x, y, w, h = result.params["local_region"]
    # 80 + 2 x 16 = 112 -> 128 wide, 40 + 32 = 72 -> 96 high, centred on the changed region.
    assert (x, y, w, h) == (86, 12, 128, 96)
    blend = np.asarray(result.images["blend"])
    previous = np.asarray(painting(SIZE, seed=4))
    outside = np.ones((SIZE, SIZE), bool)
    outside[y:y + h, x:x + w] = False
    assert np.array_equal(blend[outside], previous[outside])
    inside = np.abs(blend[y + 20:y + h - 20, x + 20:x + w - 20].astype(int) - previous[y + 20:y + h - 20, x + 20:x + w - 20])
    assert inside.mean() > 5  # the changed region got a new blend
    # Its work is the crop's: two of four steps on a 128x96 crop, not on the 256x256 canvas.
    assert result.params["unet_steps"] == 2
    again = engine.run(parse_job_request(_local_body()))
    assert np.array_equal(np.asarray(again.images["blend"]), blend)


def test_a_full_reblend_is_still_there_without_the_previous_blend(engine):
    body = _local_body()
    del body["previous_blend_png"], body["changed"]
    result = engine.run(parse_job_request(body))
    assert "local_region" not in result.params and result.images["blend"].size == (SIZE, SIZE)


@pytest.mark.parametrize("change,field", [
    ({"previous_blend_png": None}, "previous_blend_png"),
    ({"changed": None}, "changed"),
    ({"changed": {"x": 200, "y": 40, "width": 80, "height": 40}}, "changed"),
    ({"previous_blend_png": b64(Image.new("RGB", (128, 128)))}, "previous_blend_png"),
    ({"previous_blend_png": b64(Image.new("L", (SIZE, SIZE)))}, "previous_blend_png"),
])
def test_bad_local_reblends_name_the_field(change, field):
    body = {k: v for k, v in {**_local_body(), **change}.items() if v is not None}
    with pytest.raises(ProtocolError) as err:
        parse_job_request(body)
    assert err.value.field == field
