"""Canvas jobs without Krita: the windows, the choice of layers and the requests (canvas_jobs.py).

Every rectangle below is worked out by hand in the comment above it.
"""
from __future__ import annotations

import base64

import pytest

from layerfusion.canvas_jobs import (
    LayerFacts,
    Window,
    add_background_body,
    add_foreground_body,
    generation_size,
    harmonize_body,
    harmonize_plan,
    layer_prompt,
    layer_window,
    object_window,
    wanted_images,
)
from layerfusion.settings import Settings
from layerfusion.targets import UserError
from layerfusion.wire import ProtocolError, protocol


def test_selection_gets_half_its_longer_side_of_context():
    # 60x40 at (100, 200): pad 30 -> x 70..190 (120, a multiple of 8), y 170..270 (100 -> 104,
    # centred: 170 - 2 = 168). The target is the selection inside: (30, 32, 60, 40). 120x104 pixels
    # wanted: sent as they are.
    w = object_window(512, 512, (100, 200, 60, 40), 120 * 104)
    assert w == Window(70, 168, 120, 104, 120, 104, (30, 32, 60, 40))


def test_window_at_a_corner_grows_to_the_minimum_inside_the_document():
    # 40x40 at (0, 0): pad 20 -> 0..60 each way; 64 at least, centred at -2, shifted back to 0.
    w = object_window(300, 200, (0, 0, 40, 40), 64 * 64)
    assert w == Window(0, 0, 64, 64, 64, 64, (0, 0, 40, 40))


def test_window_at_the_far_edge_is_shifted_back_inside():
    # 50x50 at (250, 150) of 300x200: pad 25 -> x 225..300 (75 -> 80, start 225 - 3 = 222, end 302 >
    # 300: shifted to 220), y 125..200 (75 -> 80: 122, shifted to 120). Target (30, 30, 50, 50).
    w = object_window(300, 200, (250, 150, 50, 50), 80 * 80)
    assert w == Window(220, 120, 80, 80, 80, 80, (30, 30, 50, 50))


def test_selection_reaching_outside_the_document_is_cut_to_it():
    # (-20, -20, 100, 100) is (0, 0, 80, 80) in the document: pad 40 -> 0..120 both ways.
    w = object_window(400, 400, (-20, -20, 100, 100), 120 * 120)
    assert w == Window(0, 0, 120, 120, 120, 120, (0, 0, 80, 80))


def test_no_selection_is_the_whole_document_without_target():
    # 1001 -> 1000 (1008 does not fit; the odd pixel split: start 0); 500 -> 496, start 2.
    w = object_window(1001, 500, None, 1000 * 496)
    assert w == Window(0, 2, 1000, 496, 1000, 496, None)


def test_big_window_is_scaled_to_the_resolution_with_its_target():
    # 256² at (256, 256): pad 128 -> 128..640 (512) both ways; 256² wanted: half size, target halved.
    w = object_window(1024, 1024, (256, 256, 256, 256), 256 * 256)
    assert w == Window(128, 128, 512, 512, 256, 256, (64, 64, 128, 128))


def test_small_window_is_scaled_up_to_the_resolution():
    # 120x104 window (first test) at 4x the pixels: 240x208, the target doubled.
    w = object_window(512, 512, (100, 200, 60, 40), 4 * 120 * 104)
    assert (w.gen_width, w.gen_height, w.target) == (240, 208, (60, 64, 120, 80))


def test_generation_size_keeps_every_protocol_limit():
    assert generation_size(8192, 8192, 10 ** 9) == (2896, 2896)  # MAX_PIXELS = 4096 x 2048
    gw, gh = generation_size(8192, 1024, 10 ** 9)  # MAX_SIDE caps the long side
    assert gw == protocol.MAX_SIDE and gh == 512
    assert generation_size(64, 4096, 64) == (64, 64)  # never below MIN_SIDE
    for size in ((1000, 777, 1 << 20), (3333, 1111, 1 << 20), (64, 65, 99999)):
        gw, gh = generation_size(*size)
        assert gw % 8 == 0 and gh % 8 == 0 and gw * gh <= protocol.MAX_PIXELS


@pytest.mark.parametrize("doc, selection, words", [
    ((512, 512), (10, 10, 0, 50), "empty"),
    ((512, 512), (600, 600, 50, 50), "empty"),  # all outside the document
    ((512, 512), (10, 10, 31, 100), "31×100"),
    ((63, 512), None, "63×512"),
    # 40x200 at (400, 300): window 240x400, at 64² pixels sent 64x80: the target is 12 wide.
    ((1000, 1000), (400, 300, 40, 200), "too small at this Resolution"),
])
def test_object_window_refusals_are_plain_words(doc, selection, words):
    with pytest.raises(UserError, match=words):
        object_window(doc[0], doc[1], selection, 64 * 64)


def test_layer_window_is_the_selection_box_without_context():
    # (10, 20, 100, 50): 100 -> 104 (start 8), 50 -> 64 (start 13).
    assert layer_window(400, 300, (10, 20, 100, 50), 104 * 64) == Window(8, 13, 104, 64, 104, 64)
    assert layer_window(400, 300, None, 400 * 296) == Window(0, 2, 400, 296, 400, 296)
    with pytest.raises(UserError, match="empty"):
        layer_window(400, 300, (0, 0, 0, 0), 64 * 64)


# ---- harmonize ---------------------------------------------------------------------------------
def facts(name, index, visible=True, transparent=True, node_type="paintlayer"):
    return LayerFacts(name, name, node_type, index, visible, transparent)


def test_opaque_lowest_layer_is_the_background_rest_bottom_first():
    plan = harmonize_plan([facts("cup", 5), facts("sky", 1, transparent=False), facts("cat", 3)], False)
    assert plan.background.name == "sky"
    assert [f.name for f in plan.foregrounds] == ["cat", "cup"]


def test_transparent_lowest_layer_takes_what_lies_beneath():
    plan = harmonize_plan([facts("cup", 5), facts("cat", 3)], True)
    assert plan.background is None and plan.lowest.name == "cat"
    assert [f.name for f in plan.foregrounds] == ["cat", "cup"]


@pytest.mark.parametrize("selected, beneath, words", [
    ([], True, "Select the layers"),
    ([facts("ghost", 2, visible=False, transparent=True)], True, "no visible pixel"),
    ([facts("sky", 0, transparent=False), facts("wall", 2, transparent=False)], True, "no transparent pixel"),
    ([facts("sky", 0, transparent=False)], True, "opaque"),
    ([facts("cat", 0)], False, "Nothing visible lies beneath"),
    ([facts("set", 1, node_type="grouplayer")], True, "group layer"),
    ([facts("l%d" % i, i) for i in range(5)], True, "at most 4"),
])
def test_harmonize_refusals(selected, beneath, words):
    with pytest.raises(UserError, match=words):
        harmonize_plan(selected, beneath)


def test_four_foregrounds_over_an_opaque_fifth_are_fine():
    layers = [facts("bg", 0, transparent=False)] + [facts("l%d" % i, i) for i in range(1, 5)]
    assert len(harmonize_plan(layers, False).foregrounds) == protocol.MAX_FOREGROUNDS


def test_layer_names_become_prompts_unless_krita_made_them_up():
    assert layer_prompt("a  red cup") == "a red cup"
    for made_up in ("Paint Layer 3", "Layer 1", "Background", "Paint Layer 2 copy", ""):
        assert layer_prompt(made_up, "fallback") == "fallback"


# ---- the requests ------------------------------------------------------------------------------
def png_b64(qapp, w, h, alpha):
    from layerfusion.pixels import encode_png
    from layerfusion.qt import QColor, QImage

    image = QImage(w, h, QImage.Format.Format_ARGB32 if alpha else QImage.Format.Format_RGB32)
    image.fill(QColor(10, 200, 30, 100 if alpha else 255))
    return base64.b64encode(encode_png(image)).decode("ascii")


SETTINGS = Settings(foreground_prompt="a cat", background_prompt="a sofa", seed=9, random_seed=False,
                    steps=3, strength=0.4, blend_layers=True)


def test_add_foreground_body_carries_the_target_and_parses(qapp):
    window = object_window(512, 512, (100, 200, 60, 40), 120 * 104)
    body = add_foreground_body(SETTINGS, window, png_b64(qapp, 120, 104, False))
    assert body["kind"] == "add_foreground" and body["blend_layers"] is True
    assert body["target"] == {"x": 30, "y": 32, "width": 60, "height": 40}
    assert body["seed"] == 9 and body["steps"] == 3
    whole = add_foreground_body(SETTINGS, object_window(120, 104, None, 120 * 104), png_b64(qapp, 120, 104, False))
    assert whole.get("target") is None
    with pytest.raises(UserError, match="foreground prompt"):
        add_foreground_body(Settings(), window, png_b64(qapp, 120, 104, False))


def test_add_background_and_harmonize_bodies_parse(qapp):
    body = add_background_body(SETTINGS, png_b64(qapp, 64, 64, True), "Paint Layer 1")
    assert body["kind"] == "add_background" and body["foreground_prompt"] == "a cat"
    assert add_background_body(SETTINGS, png_b64(qapp, 64, 64, True), "lamp")["foreground_prompt"] == "lamp"
    with pytest.raises(UserError, match="background prompt"):
        add_background_body(Settings(), png_b64(qapp, 64, 64, True))
    layers = [(png_b64(qapp, 64, 64, True), "Paint Layer 2"), (png_b64(qapp, 64, 64, True), "cup")]
    body = harmonize_body(SETTINGS, layers, png_b64(qapp, 64, 64, False))
    assert body["kind"] == "harmonize" and body["strength"] == 0.4
    assert [f["prompt"] for f in body["foregrounds"]] == ["", "cup"]
    one = harmonize_body(SETTINGS, layers[:1], png_b64(qapp, 64, 64, False))
    assert one["foregrounds"][0]["prompt"] == "a cat"


def test_server_rules_are_applied_before_sending(qapp):
    # An opaque layer where an RGBA one is wanted, and mismatched sizes, are the protocol's refusals.
    with pytest.raises(ProtocolError):
        add_background_body(SETTINGS, png_b64(qapp, 64, 64, False))
    with pytest.raises(ProtocolError):
        harmonize_body(SETTINGS, [(png_b64(qapp, 64, 72, True), "cup")], png_b64(qapp, 64, 64, False))
    # A target reaching out of the image (a hand-made window) is refused like the server would.
    bad = Window(0, 0, 64, 64, 64, 64, (40, 0, 32, 32))
    with pytest.raises(ProtocolError):
        add_foreground_body(SETTINGS, bad, png_b64(qapp, 64, 64, False))


def test_wanted_images_per_kind():
    assert wanted_images("harmonize", False) == ("blend",)
    assert wanted_images("add_foreground", True) == ("foreground", "blend") + protocol.LIGHT_NAMES
