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


def test_background_goes_beneath_the_layer_and_blend_above(facts):
    assert facts["bg_upload_is_layer"]
    tree = facts["bg_tree"]
    names = [(d, n) for d, n, *_ in tree]
    assert names == [(0, "Background"), (0, "LayerFusion background: a meadow · seed 5"), (1, "Background"),
                     (1, "Shadows"), (1, "Light"), (0, "cat"), (0, "LayerFusion blend"),
                     (1, "Foreground shadows"), (1, "Foreground light"), (1, "Blend"), (0, "cup")]
    assert tree[3][3] == "multiply" and tree[4][3] == "screen"
    assert tree[6][6] is True  # the blend group passes through
    assert tree[7][3] == "multiply" and tree[8][3] == "screen" and not tree[9][4]  # Blend hidden
    assert facts["bg_pair_alpha_is_cat"]  # the pair carries the layer's alpha
    assert facts["bg_artist_untouched"]
    assert facts["bg_plain_top_level"] == ["Background", "Background", "cat", "Blend", "cup"]
    assert "no transparent pixel" in facts["bg_lowest_refused"]


def test_harmonize_takes_what_lies_beneath_and_places_the_light(facts):
    assert facts["harm_roles"] == [["background", False, ""], ["foreground", True, "cat"], ["foreground", True, "cup"]]
    assert facts["harm_bg_is_beneath"] and facts["harm_visibility_restored"]
    names = [(d, n, through) for d, n, _t, _m, _v, _i, through in facts["harm_tree"]]
    assert names == [(0, "Background", None), (0, "LayerFusion light", True), (1, "Shadows", None),
                     (1, "Light", None), (0, "cat", None), (0, "LayerFusion light: cat", True),
                     (1, "Foreground shadows", None), (1, "Foreground light", None), (0, "cup", None),
                     (0, "LayerFusion light: cup", True), (1, "Foreground shadows", None),
                     (1, "Foreground light", None), (1, "Blend", None)]
    assert facts["harm_artist_untouched"]


def test_harmonize_over_a_selected_opaque_layer(facts):
    assert facts["harm_opaque_roles"] == [["background", ""], ["foreground", "cat"]]
    assert facts["harm_opaque_bg_is_layer"]
    assert facts["harm_plain_top_level"] == ["Background", "cat", "Blend", "cup"]
    assert "lacks blend" in facts["harm_broken"]
    assert facts["harm_after_broken"] == facts["harm_plain_top_level"]  # nothing half-inserted


@pytest.mark.parametrize("key", ["object", "light", "bg", "harm"])
def test_save_and_reopen_keeps_layers_modes_and_artist_pixels(facts, key):
    assert facts[key + "_saved"]
    assert facts[key + "_reopened_same_tree"]
    assert facts[key + "_reopened_same_artist"]


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
    assert jobs["object_blends_after_reblend"] == ["Blend", "Blend"]
    assert jobs["object_tree_after_reblend"] == jobs["object_tree"] + ["Blend"]
    assert jobs["object_artist_untouched_after_reblend"]


@pytest.mark.parametrize("kind, top_level", [
    ("add_background", ["Background", "LayerFusion background: a meadow · seed 5", "cat", "LayerFusion blend",
                        "cup"]),
    ("harmonize", ["Background", "LayerFusion light", "cat", "LayerFusion light: cat", "cup",
                   "LayerFusion light: cup"]),
])
def test_layer_jobs_end_to_end(jobs, kind, top_level):
    assert jobs[kind + "_started"]
    assert jobs[kind + "_state"][0] == "done", jobs[kind + "_state"][1]
    assert jobs[kind + "_top_level"] == top_level
    assert jobs[kind + "_artist_untouched"]


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
    assert jobs["generate_tree_after_reblend"] == [row[1] for row in jobs["generate_tree"]] + ["Blend"]
