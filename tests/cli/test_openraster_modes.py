"""layers.ora with blend modes and groups: what stack.xml says, what the PNGs hold, what mergedimage.png is."""
import io
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pytest
from PIL import Image

from backend.export.openraster import (
    Group,
    Layer,
    baked_foreground_pair,
    flatten,
    light_stack,
    write_light_openraster,
    write_openraster,
)
from backend.pipeline.decoding import alpha_over
from backend.pipeline.light_layers import compose_light_stack, split_light
from tests.pipeline.test_light_layers import scene_edges, scene_random, scene_rim, scene_shadow


def read(path):
    with zipfile.ZipFile(path) as ora:
        stack = ET.fromstring(ora.read("stack.xml"))
        pngs = {name: np.asarray(Image.open(io.BytesIO(ora.read(name))))
                for name in ora.namelist() if name.endswith(".png")}
        return ora.infolist()[0].filename, stack, pngs


def solid(rgba, size=(2, 1)):
    return Image.new("RGBA", size, tuple(rgba))


@pytest.fixture(params=[scene_rim, scene_shadow, scene_edges, scene_random], ids=lambda f: f.__name__)
def scene(request):
    fg, bg, blend = request.param()
    return fg, bg, blend, split_light(fg, bg, blend)


def test_light_stack_layout_and_modes(scene, tmp_path):
    fg, bg, blend, layers = scene
    write_light_openraster(tmp_path / "layers.ora", fg, bg, layers, blend=blend)
    first, stack, pngs = read(tmp_path / "layers.ora")
    assert first == "mimetype"
    root = stack.find("stack")
    top = [(child.tag, child.get("name"), child.get("composite-op"), child.get("visibility"))
           for child in root]
    assert top == [("layer", "Blend", "svg:src-over", "hidden"),
                   ("stack", "Foreground", "svg:src-over", "visible"),
                   ("layer", "Light", "svg:screen", "visible"),
                   ("layer", "Shadows", "svg:multiply", "visible"),
                   ("layer", "Background", "svg:src-over", "visible")]
    group = root.find("stack")
    assert group.get("isolation") == "auto"  # pass-through: what the baked pair needs (Krita: not "isolate")
    assert [(c.tag, c.get("name"), c.get("composite-op")) for c in group] == [
        ("layer", "Foreground light", "svg:screen"),
        ("layer", "Foreground shadows", "svg:multiply"),
        ("layer", "Foreground", "svg:src-over")]
    by_name = {layer.get("name"): pngs[layer.get("src")] for layer in stack.iter("layer")}
    assert len({layer.get("src") for layer in stack.iter("layer")}) == 7
    assert np.array_equal(by_name["Shadows"], layers.shadows) and np.array_equal(by_name["Light"], layers.light)
    assert np.array_equal(by_name["Foreground"], fg) and np.array_equal(by_name["Background"], bg)
    assert np.array_equal(by_name["Blend"], blend)
    # mergedimage.png: the intended inherit-alpha result, opaque.
    merged = pngs["mergedimage.png"]
    assert merged.shape == (*fg.shape[:2], 4) and (merged[..., 3] == 255).all()
    assert np.array_equal(merged[..., :3], compose_light_stack(fg, bg, layers))
    assert np.abs(merged[..., :3].astype(int) - blend).max() <= 1


def test_the_baked_pair_is_the_clipped_pair_where_alpha_is_0_or_255(scene):
    fg, bg, _, layers = scene
    shadows, light = baked_foreground_pair(fg, bg, layers)
    alpha = fg[..., 3]
    opaque, clear = alpha == 255, alpha == 0
    assert np.array_equal(shadows[..., 3], np.where(alpha > 0, 255, 0))  # the clip, as the layer's alpha
    assert np.array_equal(light[..., 3], shadows[..., 3])
    assert np.array_equal(shadows[opaque][:, :3], layers.foreground_shadows[opaque])
    assert np.array_equal(light[opaque][:, :3], layers.foreground_light[opaque])
    assert (shadows[clear][:, :3] == 255).all() and (light[clear][:, :3] == 0).all()


def test_the_baked_stack_composites_to_the_merged_image(scene):
    """What Krita shows (the file's own modes, no inherit alpha) is the intended result, edges included."""
    fg, bg, blend, layers = scene
    shown = np.asarray(flatten(light_stack(fg, bg, layers, blend=blend)))
    assert (shown[..., 3] == 255).all()
    assert np.array_equal(shown[..., :3], compose_light_stack(fg, bg, layers))


def test_the_naive_bake_would_leave_halos():
    """The pair with the foreground's alpha as its own is off on edges: why the colours are re-solved."""
    fg, bg, blend = scene_rim()
    layers = split_light(fg, bg, blend)
    entries = light_stack(fg, bg, layers)
    alpha = fg[..., 3:4]
    naive = [Layer("Foreground light", Image.fromarray(np.concatenate([layers.foreground_light, alpha], -1)),
                   "svg:screen"),
             Layer("Foreground shadows",
                   Image.fromarray(np.concatenate([layers.foreground_shadows, alpha], -1)), "svg:multiply"),
             Layer("Foreground", Image.fromarray(fg, "RGBA"))]
    entries[0] = Group("Foreground", naive, isolated=False)
    shown = np.asarray(flatten(entries))[..., :3].astype(int)
    edge = (alpha[..., 0] > 0) & (alpha[..., 0] < 255)
    assert np.abs(shown - blend)[edge].max() > 10


def test_hidden_light_layers_give_the_plain_composite(tmp_path):
    fg, bg, blend = scene_edges()
    layers = split_light(fg, bg, blend)
    entries = light_stack(fg, bg, layers)
    group, light, shadows, background = entries
    assert isinstance(group, Group)
    plain = [Group("Foreground", [group.children[2]], isolated=False), background]
    assert np.array_equal(np.asarray(flatten(plain))[..., :3], alpha_over(fg, bg))


def test_the_old_call_still_writes_plain_layers(tmp_path):
    fg = np.zeros((3, 4, 4), np.uint8)
    fg[..., 0], fg[..., 3] = 200, [[0, 128, 255, 51]] * 3
    bg = np.full((3, 4, 3), 40, np.uint8)
    write_openraster(tmp_path / "plain.ora", [("Foreground", Image.fromarray(fg, "RGBA")),
                                              ("Background", Image.fromarray(bg, "RGB"))])
    first, stack, pngs = read(tmp_path / "plain.ora")
    assert first == "mimetype"
    layers = stack.findall("./stack/layer")
    assert [(la.get("name"), la.get("composite-op")) for la in layers] == [
        ("Foreground", "svg:src-over"), ("Background", "svg:src-over")]
    assert np.array_equal(pngs[layers[0].get("src")], fg)
    assert np.array_equal(pngs["mergedimage.png"][..., :3], alpha_over(fg, bg))
    assert (stack.get("w"), stack.get("h")) == ("4", "3")


def test_nested_groups_and_modes_in_the_merged_image(tmp_path):
    # Bottom up: grey 200; an isolated group holding [white base, multiply 128] = 128 opaque, multiplied
    # onto 200 by the group's own mode: mul(128, 200) = 100; a screen of 132 on top: 232 - 52 = 180.
    entries = [
        Layer("Screen", solid((132, 132, 132, 255)), "svg:screen"),
        Group("Inner", [Layer("Multiply", solid((128, 128, 128, 255)), "svg:multiply"),
                        Layer("Base", solid((255, 255, 255, 255)))], composite_op="svg:multiply"),
        Layer("Hidden", solid((0, 0, 0, 255)), visible=False),
        Layer("Grey", solid((200, 200, 200, 255))),
    ]
    write_openraster(tmp_path / "nested.ora", entries)
    _, stack, pngs = read(tmp_path / "nested.ora")
    inner = stack.find("./stack/stack")
    assert inner.get("name") == "Inner" and inner.get("isolation") == "isolate"
    assert inner.get("composite-op") == "svg:multiply"
    assert [la.get("name") for la in inner.findall("layer")] == ["Multiply", "Base"]
    assert [c.get("name") for c in stack.find("stack")] == ["Screen", "Inner", "Hidden", "Grey"]
    assert pngs["mergedimage.png"][0, 0].tolist() == [180, 180, 180, 255]


def test_layer_opacity_is_written_and_composited(tmp_path):
    entries = [Layer("Black", solid((0, 0, 0, 255)), "svg:multiply", opacity=0.5),
               Layer("Grey", solid((200, 200, 200, 255)))]
    write_openraster(tmp_path / "o.ora", entries)
    _, stack, pngs = read(tmp_path / "o.ora")
    assert stack.find("./stack/layer").get("opacity") == "0.5"
    assert pngs["mergedimage.png"][0, 0, 0] == 100  # lerp(200, 0, 128) = 100


def test_bad_stacks_are_refused(tmp_path):
    with pytest.raises(ValueError, match="composite-op"):
        write_openraster(tmp_path / "x.ora", [Layer("X", solid((0, 0, 0, 255)), "svg:color-dodge")])
    with pytest.raises(ValueError, match="2x1"):
        write_openraster(tmp_path / "x.ora", [("A", solid((0, 0, 0, 255))), ("B", solid((0, 0, 0, 255), (3, 1)))])
    with pytest.raises(ValueError, match="no layers"):
        write_openraster(tmp_path / "x.ora", [Group("Empty", []), ("A", solid((0, 0, 0, 255)))])
    with pytest.raises(ValueError, match="at least one"):
        write_openraster(tmp_path / "x.ora", [])
    fg, bg, blend = scene_edges()
    with pytest.raises(ValueError, match="background"):
        write_light_openraster(tmp_path / "x.ora", fg, bg[1:], split_light(fg, bg, blend))
