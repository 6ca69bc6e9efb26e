"""Jobs on the artist's own layers, on the tiny model: add an object, add a background, harmonize."""
import base64
import io

import numpy as np
import pytest
from PIL import Image

from shared.fields import ProtocolError
from shared.protocol import parse_job_request


def b64(image):
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def painting(size=128, seed=0):
    """A painted-looking RGB canvas: smooth colour ramps plus a little noise."""
    y, x = np.mgrid[0:size, 0:size] / size
    rng = np.random.default_rng(seed)
    rgb = np.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.5 + 0.3 * x * y], -1) + rng.normal(0, 0.03, (size, size, 3))
    return Image.fromarray((rgb.clip(0, 1) * 255).round().astype(np.uint8), "RGB")


def square_layer(x, y, side=32, color=(220, 40, 40), size=128):
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    layer.paste(Image.new("RGBA", (side, side), (*color, 255)), (x, y))
    return layer


def arr(image):
    return np.asarray(image, dtype=float)


def test_add_foreground_keeps_the_object_in_the_target(engine):
    request = parse_job_request({
        "kind": "add_foreground", "background_png": b64(painting()), "foreground_prompt": "a red apple",
        "target": {"x": 64, "y": 32, "width": 48, "height": 64}, "steps": 4, "seed": 1})
    result = engine.run(request)
    assert {"foreground", "blend", "mask_soft"} <= set(result.images) and "background" not in result.images
    alpha = arr(result.images["foreground"])[..., 3]
    assert result.images["foreground"].size == (128, 128) and alpha.sum() > 0
    inside = alpha[32:96, 64:112].sum()
    assert inside / alpha.sum() >= 0.9
    # The method's own mask was cut to the target too (nearest-upsampled from the prior grid).
    soft = arr(result.images["mask_soft"])
    assert soft[:, :56].max() == 0 and soft[:24].max() == 0
    # One prior pass (to the step nearest 0.8 T) plus the joint run, five rows a call.
    assert result.params["unet_rows"] == 5 and result.params["unet_steps"] > 4


def test_add_foreground_without_target_may_place_the_object_anywhere(engine):
    request = parse_job_request({"kind": "add_foreground", "background_png": b64(painting()),
                                 "foreground_prompt": "a red apple", "steps": 3, "seed": 1})
    alpha = arr(engine.run(request).images["foreground"])[..., 3]
    assert alpha[:, :56].sum() > 0  # nothing cut the left side away


def test_add_background_generates_behind_the_layer(engine):
    layer = square_layer(40, 40, side=48)
    request = parse_job_request({"kind": "add_background", "foreground_png": b64(layer),
                                 "background_prompt": "a beach", "steps": 3, "seed": 2})
    result = engine.run(request)
    assert set(result.images) == {"background", "blend"}
    assert result.images["background"].mode == "RGB" and result.images["background"].size == (128, 128)
    assert result.params["unet_rows"] == 5
    # The given layer steers the blend: a different layer (same seed) gives a different blend where it lies.
    other = parse_job_request({"kind": "add_background", "foreground_png": b64(square_layer(40, 40, 48, (20, 200, 40))),
                               "background_prompt": "a beach", "steps": 3, "seed": 2})
    diff = np.abs(arr(result.images["blend"]) - arr(engine.run(other).images["blend"])).mean(-1)
    assert diff[40:88, 40:88].mean() > diff[:24].mean()


def harmonize(engine, layers, background, **extra):
    return engine.run(parse_job_request({
        "kind": "harmonize", "background_png": b64(background), "strength": 0.5, "steps": 8, "seed": 3,
        "foregrounds": [{"png": b64(layer), "prompt": "a box"} for layer in layers], "blend_prompt": "boxes on a wall",
        **extra}))


def test_reblend_is_a_harmonize_of_one_layer(engine):
    background, layer = painting(), square_layer(16, 48)
    reblend = engine.run(parse_job_request({
        "kind": "reblend", "foreground_png": b64(layer), "background_png": b64(background),
        "foreground_prompt": "a box", "background_prompt": "a wall", "blend_prompt": "boxes on a wall",
        "strength": 0.5, "steps": 8, "seed": 3}))
    single = harmonize(engine, [layer], background, background_prompt="a wall")
    assert np.array_equal(arr(reblend.images["blend"]), arr(single.images["blend"]))
    assert single.params["unet_rows"] == 4  # FG, BG, BL_u, BL_c


def noise_canvas():
    """Texture everywhere, so a change shows wherever the blend changed (the tiny model is random)."""
    return Image.fromarray((np.random.default_rng(0).random((128, 128, 3)) * 255).astype(np.uint8))


def test_each_harmonized_layer_changes_the_blend_where_it_lies(engine):
    background = noise_canvas()
    a, b = square_layer(8, 8), square_layer(88, 88, color=(30, 60, 220))
    one = harmonize(engine, [a], background)
    two = harmonize(engine, [a, b], background)
    assert two.params["unet_rows"] == 5
    diff = np.abs(arr(one.images["blend"]) - arr(two.images["blend"])).mean(-1)
    # Most where the new layer lies; least under the first layer, whose mask pins the blend to it.
    assert diff[88:120, 88:120].mean() > 3 * diff[8:40, 8:40].mean()
    assert diff[88:120, 88:120].mean() > 1.5 * diff[:, 48:80].mean()


def test_swapping_the_stacking_order_changes_the_overlap_only(engine):
    background = noise_canvas()
    a, b = square_layer(30, 30, side=48), square_layer(54, 54, side=48, color=(30, 60, 220))  # overlap 54..78
    ab = harmonize(engine, [a, b], background)
    ba = harmonize(engine, [b, a], background)
    diff = np.abs(arr(ab.images["blend"]) - arr(ba.images["blend"])).mean(-1)
    overlap = diff[54:78, 54:78].mean()
    elsewhere = np.concatenate([diff[30:54, 30:78].ravel(), diff[78:102, 54:102].ravel(), diff[:24].ravel()]).mean()
    assert overlap > 2 * elsewhere


def test_bad_layers_are_refused_naming_the_field(engine):
    background = painting()
    empty = Image.new("RGBA", (128, 128), (0, 0, 0, 0))
    opaque = Image.new("RGBA", (128, 128), (10, 20, 30, 255))
    cases = [
        ({"kind": "harmonize", "background_png": b64(background),
          "foregrounds": [{"png": b64(square_layer(0, 0))}, {"png": b64(empty)}]}, "foregrounds[1].png", "no visible"),
        ({"kind": "add_background", "foreground_png": b64(opaque), "background_prompt": "a beach"},
         "foreground_png", "no transparent"),
    ]
    for body, field, words in cases:
        with pytest.raises(ProtocolError) as err:
            engine.check(parse_job_request(body))
        assert err.value.field == field and words in err.value.message


def test_a_transparent_background_is_flattened_on_white_and_said(engine):
    canvas = painting().convert("RGBA")
    pixels = np.asarray(canvas).copy()
    pixels[:, :64, 3] = 0  # the left half unpainted
    request = parse_job_request({"kind": "harmonize", "background_png": b64(Image.fromarray(pixels, "RGBA")),
                                 "foregrounds": [{"png": b64(square_layer(70, 40))}], "steps": 2, "seed": 1})
    result = engine.run(request)
    assert result.params["notices"] == ["'background_png' had transparent pixels: it was flattened on white"]


@pytest.mark.parametrize("guidance,sampler", [(1.0, "euler"), (7.0, "dpmpp_2m_karras")])
def test_every_kind_runs_unguided_and_with_the_multistep_sampler(engine, guidance, sampler):
    common = {"steps": 3, "seed": 5, "guidance": guidance, "options": {"sampler": sampler}}
    bodies = [
        {"kind": "add_foreground", "background_png": b64(painting(64)), "foreground_prompt": "a cat",
         "target": {"x": 8, "y": 8, "width": 40, "height": 40}},
        {"kind": "add_background", "foreground_png": b64(square_layer(8, 8, size=64)), "background_prompt": "a beach"},
        {"kind": "harmonize", "background_png": b64(painting(64)),
         "foregrounds": [{"png": b64(square_layer(8, 8, size=64))}, {"png": b64(square_layer(30, 30, size=64))}]},
    ]
    for body in bodies:
        result = engine.run(parse_job_request({**body, **common}))
        blend = arr(result.images["blend"])
        assert blend.shape == (64, 64, 3) and np.isfinite(blend).all() and blend.std() > 0, body["kind"]
        if body["kind"] == "add_foreground":
            alpha = arr(result.images["foreground"])[..., 3]
            assert alpha[8:48, 8:48].sum() >= 0.9 * alpha.sum()


def test_blend_layers_reproduce_the_blend_and_hide_back_to_the_composite(engine):
    from backend.pipeline.decoding import alpha_over, merge_layers
    from backend.pipeline.light_layers import LightLayers, compose_light_stack

    background = painting()
    layers = [square_layer(20, 20, side=48), square_layer(60, 60, side=48, color=(30, 60, 220))]
    jobs = {
        "add_foreground": ({"kind": "add_foreground", "background_png": b64(background), "foreground_prompt": "a cat",
                            "target": {"x": 16, "y": 16, "width": 96, "height": 96}}, None),
        "harmonize": ({"kind": "harmonize", "background_png": b64(background),
                       "foregrounds": [{"png": b64(layer)} for layer in layers]}, layers),
    }
    for kind, (body, given) in jobs.items():
        result = engine.run(parse_job_request({**body, "steps": 4, "seed": 6, "blend_layers": True}))
        split = LightLayers(**{name: np.asarray(result.images[name]) for name in
                               ("shadows", "light", "foreground_shadows", "foreground_light")})
        fg = np.asarray(result.images["foreground"]) if given is None else merge_layers([np.asarray(g) for g in given])
        bg = np.asarray(background)
        error = np.abs(compose_light_stack(fg, bg, split).astype(int) - np.asarray(result.images["blend"]).astype(int))
        assert error.mean() <= 1 and np.percentile(error, 99) <= 3, kind
        assert np.array_equal(compose_light_stack(fg, bg, split, hidden=True), alpha_over(fg, bg)), kind
        assert (np.asarray(result.images["blend"]) != alpha_over(fg, bg)).any(), kind  # there was something to split
