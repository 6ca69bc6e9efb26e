"""The plugin's document side in real Krita 5.1 (kritarunner) against a live tiny backend."""
from __future__ import annotations

import pytest

from tests.krita.kritarun import run_scenario

pytestmark = pytest.mark.krita
W, H, DX, DY = 160, 128, 24, 16


@pytest.fixture(scope="module")
def facts(live_backend, tmp_path_factory):
    return run_scenario("scenario_layers", {"url": live_backend.url, "width": W, "height": H, "dx": DX, "dy": DY},
                        tmp_path_factory.mktemp("krita-layers"))


def test_generate_inserts_one_group_with_three_layers(facts):
    assert facts["generate_state"] == "done", facts["message"]
    assert facts["documents_contract"] == []  # KritaSide is what the controller's Documents protocol says
    assert facts["group_type"] == "grouplayer"
    assert facts["group_name"].startswith("LayerFusion: a wine glass / a wooden table · seed 5")
    assert facts["children"] == ["Background", "Foreground", "Blend"]
    assert facts["top_level"][-1] == facts["group_name"]
    for name in ("Background", "Blend"):
        assert facts["bounds"][name] == [0, 0, W, H]  # scaled back from the model's size to the canvas
    x, y, w, h = facts["bounds"]["Foreground"]
    assert 0 <= x and 0 <= y and x + w <= W and y + h <= H


def test_foreground_has_real_partial_alpha(facts):
    assert facts["fg_alpha_levels"] > 10
    assert facts["fg_partial_alpha"] > 0
    assert facts["bg_alpha_min"] == 255


def test_generative_blend_is_not_an_alpha_composite(facts):
    assert facts["blend_vs_alpha_composite"] > 2.0


def test_generation_parameters_are_stored_with_the_group(facts):
    assert facts["record_seed"] == 5
    assert facts["record_rect"] == [0, 0, W, H]
    assert facts["record_generation_size"][0] % 64 == 0


def test_moved_foreground_is_read_where_it_lies(facts):
    x, y, w, h = facts["bounds"]["Foreground"]
    assert facts["fg_bounds_moved"][:2] == [x + DX, y + DY]
    assert facts["fg_read_shift_ok"]


def test_regenerate_blend_replaces_blend_in_one_insertion(facts):
    assert facts["reblend_state"] == "done", facts["reblend_message"]
    assert facts["blend_change_moved_region"] > 1.0
    # The new Blend goes on top of the old one (one undo step shows the old one again).
    assert facts["children_after_reblend"] == ["Background", "Foreground", "Blend (previous)", "Blend"]
    assert facts["old_blend_kept_below"]
    assert facts["reblend_params_recorded"]
    assert facts["blend_count_after_second"] == 2


def test_auto_reblend_cancels_the_stale_job_and_reblends_after_the_move(facts):
    assert facts["auto_outcomes"] == ["cancelled", "done"]
    assert facts["auto_blend_changed"]
    assert facts["auto_blend_count"] == 2


def test_a_moved_object_is_reblended_locally_and_the_rest_of_the_blend_is_kept(facts):
    assert facts["local_state"] == "done"
    # The square (40, 40) 24 x 24 moved 16 px right: old and new bounds, at the generation size.
    assert facts["local_changed"] is not None and facts["local_region"] is not None
    x, y, w, h = facts["local_region"]
    gen_w, gen_h = facts["record_generation_size"]
    assert w * h < 0.6 * gen_w * gen_h  # a crop, not the whole canvas
    assert facts["local_outside_pixels"] > 0 and facts["local_outside_same"]
    assert facts["local_inside_change"] > 1.0


def test_a_reblend_reads_the_foreground_over_its_bounds_and_a_drag_takes_the_rest_over(facts):
    # The square, moved 16 px: its bounds are all that is read, and expanded it is the layer as read whole.
    assert facts["read_fg_at"] == [56, 40, 24, 24]
    assert facts["read_fg_bytes"] == [24 * 24 * 4, W * H * 4]
    assert facts["read_fg_expanded_same"]
    assert facts["read_fg_box"] == [[56, 40, 24, 24], [56, 40, 24, 24]]
    assert facts["read_bg_blend_same"] == [True, True]
    # Same layers, same bounds: taken over, PNGs included; a moved Background or another Blend is read anew.
    assert facts["reuse_unchanged"] == [True, True, {"background": "background-png", "previous_blend": "blend-png"}]
    assert facts["reuse_background_moved"] == [False, True, True, ["previous_blend"]]
    assert facts["reuse_other_blend"] == [False, True, ["background"]]
    assert facts["reuse_put_in_blend"] == [True, True]  # what a re-blend put in, known without reading it
    # The drag's prefetch: 13 strips of 10 rows per layer (H = 128), the pixels exact, taken over.
    assert facts["prefetch"] == [26, True, True, True, True]
    assert facts["prefetch_moved_background"] == ["previous_blend"]
    assert facts["write_visible"] == [[30, 20, 12, 9], True, [0, 0]]


def test_after_an_undone_reblend_the_restored_blend_keeps_its_own_box(facts):
    # blend_a was made with the square at (40, 40) 24 x 24; it now lies at x = 56: their union.
    assert facts["undone_changed"] == [40, 40, 40, 24]
    assert facts["undone_previous_is_blend_a"]
    assert facts["undone_reblend_local"]


def test_selection_bounds_are_the_target(facts):
    x, y, w, h, gen_w, gen_h = facts["selection_target"]
    assert (x, y, w, h) == (16, 8, 96, 64)
    assert gen_w > gen_h and gen_w % 64 == 0 and gen_h % 64 == 0


def test_failed_insert_leaves_the_document_untouched(facts):
    assert "foreground" in facts["broken_insert"]
    assert facts["after_broken_insert_unchanged"]
    assert facts["records_after_broken"] == 1


def test_closed_document_is_left_alone(facts):
    assert "closed" in facts["closed_doc_message"]


def test_save_and_reopen_keeps_group_params_and_placement(facts):
    assert facts["saved"] and facts["reopened"]
    assert facts["reopened_children"] == ["Background", "Foreground", "Blend (previous)", "Blend"]
    assert facts["reopened_record_seed"] == 5
    assert facts["reopened_fg_bounds"] == facts["fg_bounds_saved"]
    assert facts["fg_bounds_saved"][:2] == [56, 40]  # the local re-blend test's square, moved 16 px right
    assert facts["reopened_fg_same_pixels"]
