"""The canvas jobs' document side in real Krita 5.1 (kritarunner): reading the artist's layers and placing
the results of Add object, Generate background and Harmonize, from result PNGs made in the scenario
(no server). The artist's layers must come out bit-identical, and a .kra save + reopen keep it all."""
from __future__ import annotations

import pytest

from tests.krita.kritarun import run_scenario

pytestmark = pytest.mark.krita
W, H = 160, 128  # scenario_canvas.py's document

# [depth, name, type, blend mode, visible, inherit alpha, pass-through (groups)]


def layer(depth, name, mode="normal", visible=True, inherit=False):
    return [depth, name, "paintlayer", mode, visible, inherit, None]


def group(depth, name, through):
    return [depth, name, "grouplayer", "normal", True, False, through]


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    return run_scenario("scenario_canvas", {}, tmp_path_factory.mktemp("krita-canvas"), timeout=900)


def test_object_window_is_the_selection_with_context(facts):
    # 48x40 at (40, 30): pad 24 -> x 16..112 (96), y 6..94 (88); the target is the selection inside.
    assert facts["object_window"] == [16, 6, 96, 88]
    assert facts["object_sent"] == [96, 88, [24, 24, 48, 40]]
    assert facts["object_upload_is_canvas"]  # the visible canvas over the window


def test_object_goes_in_as_one_recorded_group_on_top(facts):
    assert facts["object_top"].startswith("LayerFusion object: a green ball · seed 3")
    assert facts["object_tree"] == [layer(0, "Foreground"), layer(0, "Blend")]
    assert facts["object_fg_pixels"] and facts["object_fg_outside_empty"]
    assert facts["object_record"] == ["add_foreground", [16, 6, 96, 88], [96, 88], ["blend", "foreground"]]
    assert facts["object_artist_untouched"]


def test_object_reblend_reads_the_canvas_beneath_as_it_is_now(facts):
    assert facts["reblend_bg_is_canvas"] and facts["reblend_fg_is_fg"]
    assert facts["reblend_bg_follows_edit"]  # the artist repainted the Background after the job
    assert facts["visibility_restored"]
    assert facts["object_blend_layers"] == ["Blend"]


def test_object_blend_as_layers_stack(facts):
    assert facts["light_window"] == [0, 0, W, H, None]
    assert facts["light_group_pass_through"] is True
    assert facts["light_tree"] == [
        layer(0, "Shadows", "multiply"), layer(0, "Light", "screen"),
        group(0, "Object", False),
        layer(1, "Foreground"), layer(1, "Foreground shadows", "multiply", inherit=True),
        layer(1, "Foreground light", "screen", inherit=True),
        layer(0, "Blend", visible=False),
    ]
    assert facts["light_blend_layers"] == ["Blend"]  # a re-blend replaces only that
    assert facts["light_reblend_finds_fg"]
    assert facts["light_artist_untouched"]


def test_object_light_layers_composite_as_specified(facts):
    shown, expected = facts["light_outside"]
    assert all(abs(a - b) <= 1 for a, b in zip(shown[:3], expected))  # canvas x 128/255; the pair clipped away
    assert all(abs(a - b) <= 1 for a, b in zip(facts["light_on_object"][:3], [64, 255, 64]))


def clone(depth, name):
    return [depth, name, "clonelayer", "normal", True, False, None]


def test_background_goes_in_as_one_group_over_the_layer(facts):
    assert facts["bg_upload_is_layer"]
    assert [name for name, _parent in facts["bg_new_roots"]] == ["LayerFusion background: a meadow · seed 5"]
    assert facts["bg_tree"] == [
        layer(0, "Background"), layer(0, "cat"),
        group(0, "LayerFusion background: a meadow · seed 5", False),
        layer(1, "Background"), layer(1, "Shadows", "multiply"), layer(1, "Light", "screen"),
        group(1, "Object", False),
        clone(2, "cat (clone)"), layer(2, "Foreground shadows", "multiply", inherit=True),
        layer(2, "Foreground light", "screen", inherit=True),
        layer(1, "Blend", visible=False),
        layer(0, "cup"),
    ]
    assert facts["bg_clone_shows_cat"]  # the artist's pixels, bit-identical
    assert facts["bg_artist_untouched"]
    shown, expected = facts["bg_outside"]
    assert all(abs(a - b) <= 1 for a, b in zip(shown[:3], expected))  # the pair clipped to the cat's alpha
    assert facts["bg_reblend_reads"] == [True, True]  # recorded: Regenerate blend reads clone and Background


def test_background_plain_is_a_generated_groups_shape_and_follows_the_layer(facts):
    top = facts["bg_plain_top_level"]
    assert top[:2] == ["Background", "cat"] and top[2].startswith("LayerFusion background:") and top[3] == "cup"
    assert facts["bg_plain_tree"] == [["Background", "paintlayer"], ["cat (clone)", "clonelayer"],
                                      ["Blend", "paintlayer"]]
    # painted on after the job, then the clone moved 16 px right: the re-blend reads both
    colour, alpha_left_behind = facts["bg_clone_follows_and_moves"]
    assert colour == [0, 0, 255] and alpha_left_behind == 0
    assert "no transparent pixel" in facts["bg_lowest_refused"]


def test_harmonize_with_light_rebuilds_the_stack_in_one_group(facts):
    assert facts["harm_roles"] == [["background", False, ""], ["foreground", True, "cat"], ["foreground", True, "cup"]]
    assert facts["harm_bg_is_beneath"] and facts["harm_visibility_restored"]
    assert [name for name, _parent in facts["harm_new_roots"]] == ["LayerFusion harmonized · seed 7"]
    assert facts["harm_tree"] == [
        layer(0, "Background"), layer(0, "cat"), layer(0, "cup"),
        group(0, "LayerFusion harmonized · seed 7", False),
        layer(1, "Canvas beneath"), layer(1, "Shadows", "multiply"), layer(1, "Light", "screen"),
        group(1, "Object", False),
        clone(2, "cat (clone)"), clone(2, "cup (clone)"),
        layer(2, "Foreground shadows", "multiply", inherit=True),
        layer(2, "Foreground light", "screen", inherit=True),
        layer(1, "Blend", visible=False),
    ]
    assert facts["harm_clones_show_layers"] == [True, True]
    assert facts["harm_canvas_beneath"]  # what was harmonized, as it was sent
    assert facts["harm_artist_untouched"]


def test_harmonize_over_a_selected_opaque_layer(facts):
    assert facts["harm_opaque_roles"] == [["background", ""], ["foreground", "cat"]]
    assert facts["harm_opaque_bg_is_layer"]
    assert facts["harm_plain_top_level"] == ["Background", "cat", "Blend", "cup"]
    assert [name for name, _parent in facts["harm_plain_new_roots"]] == ["Blend"]
    assert "lacks blend" in facts["harm_broken"]
    assert facts["harm_after_broken"] == facts["harm_plain_top_level"]  # nothing half-inserted


@pytest.mark.parametrize("key", ["object", "light", "bg", "harm"])
def test_save_and_reopen_keeps_layers_modes_and_artist_pixels(facts, key):
    assert facts[key + "_saved"]
    assert facts[key + "_reopened_same_tree"]
    assert facts[key + "_reopened_same_artist"]
    # Regenerate blend reads the same layers after the reopen (a harmonized group of two is not recorded)
    assert facts[key + "_reopened_reblend_reads"] == [key != "harm", True]


# ---- end to end: the controller, the live tiny backend, real Krita -------------------------------
@pytest.fixture(scope="module")
def jobs(live_backend, tmp_path_factory):
    return run_scenario("scenario_canvas_jobs", {"url": live_backend.url}, tmp_path_factory.mktemp("krita-jobs"))


def test_add_object_end_to_end_then_reblend(jobs):
    assert jobs["object_started"]
    assert jobs["object_state"][0] == "done", jobs["object_state"][1]
    assert jobs["object_group"].startswith("LayerFusion object: a green ball · seed 5")
    assert jobs["object_tree"] == ["Shadows", "Light", "Object", "Foreground", "Foreground shadows",
                                   "Foreground light", "Blend"]
    assert jobs["object_artist_untouched"]
    assert jobs["object_reblend"][0] == "done", jobs["object_reblend"][1]
    assert jobs["object_blends_after_reblend"] == ["Blend (previous)", "Blend"]
    assert jobs["object_tree_after_reblend"] == jobs["object_tree"][:-1] + ["Blend (previous)", "Blend"]
    assert jobs["object_artist_untouched_after_reblend"]


@pytest.mark.parametrize("kind, top_level", [
    ("add_background", ["Background", "cat", "LayerFusion background: a meadow · seed 5", "cup"]),
    ("harmonize", ["Background", "cat", "cup", "LayerFusion harmonized · seed 5"]),
])
def test_layer_jobs_end_to_end(jobs, kind, top_level):
    assert jobs[kind + "_started"]
    assert jobs[kind + "_state"][0] == "done", jobs[kind + "_state"][1]
    assert jobs[kind + "_top_level"] == top_level
    assert jobs[kind + "_artist_untouched"]


def test_background_group_reblends_after_save_and_reopen(jobs):
    assert jobs["reopen_saved"]
    assert jobs["reopen_group"] == "LayerFusion background: a meadow · seed 5"
    assert jobs["reopen_reblend_started"]
    assert jobs["reopen_reblend"][0] == "done", jobs["reopen_reblend"][1]
    assert jobs["reopen_blends"] == ["Blend (previous)", "Blend"]  # the new one on top, the previous beneath


def test_generate_with_blend_as_layers_end_to_end(jobs):
    assert jobs["generate_state"][0] == "done", jobs["generate_state"][1]
    assert jobs["generate_tree"] == [
        layer(0, "Background"), layer(0, "Shadows", "multiply"), layer(0, "Light", "screen"),
        group(0, "Object", False),
        layer(1, "Foreground"), layer(1, "Foreground shadows", "multiply", inherit=True),
        layer(1, "Foreground light", "screen", inherit=True),
        layer(0, "Blend", visible=False),
    ]
    assert jobs["generate_reblend"][0] == "done", jobs["generate_reblend"][1]
    assert jobs["generate_tree_after_reblend"] == [row[1] for row in jobs["generate_tree"]][:-1] + [
        "Blend (previous)", "Blend"]
