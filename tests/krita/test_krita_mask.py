"""The optional Mask layer and Select foreground in real Krita 5.1 (kritarunner), against a live tiny backend."""
from __future__ import annotations

import pytest

from tests.krita.kritarun import run_scenario

pytestmark = pytest.mark.krita
W, H = 160, 120
RECT = [16, 8, 120, 72]  # a selection: its model size (a 64-multiple) is scaled back to it


@pytest.fixture(scope="module")
def facts(live_backend, tmp_path_factory):
    return run_scenario("scenario_mask", {"url": live_backend.url, "width": W, "height": H, "rect": RECT},
                        tmp_path_factory.mktemp("krita-mask"))


def test_mask_is_fetched_and_inserted_hidden_below_the_foreground(facts):
    assert facts["generate_state"] == "done", facts["message"]
    assert facts["fetched"] == ["background", "blend", "foreground", "mask_hard"]
    assert facts["children"] == [["Background", True], ["Mask", False], ["Foreground", True], ["Blend", True]]
    assert facts["blend_layers"] == ["Blend"]


def test_mask_pixels_are_the_png_scaled_to_the_target(facts):
    assert facts["png_grey"]
    assert facts["png_size"][0] % 64 == 0 and facts["png_size"] != RECT[2:]  # so it was scaled
    assert facts["mask_bounds"] == RECT
    assert facts["mask_outside_rect_empty"]
    assert facts["mask_opaque_grey"]
    # Against an independent nearest-neighbour resampling: equal but for edge pixels, which smooth
    # scaling mixes.
    assert facts["mask_vs_nearest_mean"] < 3.0
    assert facts["mask_vs_nearest_far_share"] < 0.02
    assert facts["mask_levels"][1] - facts["mask_levels"][0] >= (facts["png_levels"][1] - facts["png_levels"][0]) // 2


def test_reblend_keeps_the_mask(facts):
    assert facts["reblend_state"] == "done"
    assert facts["children_after_reblend"] == ["Background", "Mask", "Foreground", "Blend (previous)", "Blend"]
    assert facts["mask_kept"]


def test_select_foreground_selects_the_foreground_alpha(facts):
    assert facts["fg_alpha_levels"] > 2  # a real alpha, not just on/off
    for label in ("group", "background", "mask"):
        assert facts["select_from_" + label] == "Foreground"
        assert facts["selection_is_alpha_" + label], label
    assert facts["selection_is_alpha_moved"]
    assert facts["select_from_paint"] == "Paint" and facts["selection_is_alpha_paint"]


def test_select_foreground_without_such_a_layer_says_so(facts):
    assert facts["active_node"] is None  # kritarunner: no view, no active node
    assert facts["controller_no_active"] is False
    text, error = facts["message_no_active"]
    assert error and "paint layer" in text
    assert "paint layer" in facts["error_other_group"]
    assert "no visible pixels" in facts["error_empty"]
    assert facts["selection_unchanged"]
