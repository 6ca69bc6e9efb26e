"""Whole tiny-model runs through the Engine: every blend mode, alpha, determinism, re-blend, cancel."""
import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from backend.pipeline.decoding import alpha_over
from backend.pipeline.progress import GenerationCancelled
from shared.fields import ProtocolError
from shared.protocol import LAYER_NAMES, parse_job_request

BASE = {"kind": "generate", "foreground_prompt": "a glass of water", "background_prompt": "a wooden table",
        "width": 64, "height": 64, "steps": 4, "seed": 7}


def generate(engine, **changes):
    return engine.run(parse_job_request({**BASE, **changes}))


def png_round_trip(image):
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return Image.open(io.BytesIO(buffer.getvalue()))


def b64(image):
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def triplet(engine):
    return generate(engine)


def test_generative_triplet(triplet):
    images = triplet.images
    assert images["foreground"].mode == "RGBA" and images["background"].mode == "RGB"
    assert images["blend"].mode == "RGB"
    assert {im.size for im in images.values()} == {(64, 64)}
    assert triplet.params["seed"] == 7 and triplet.params["unet_steps"] == 5  # 1 prior step + 4


def test_foreground_png_has_varying_alpha(triplet):
    alpha = np.asarray(png_round_trip(triplet.images["foreground"]))[..., 3]
    assert alpha.std() > 10 and len(np.unique(alpha)) > 10


def test_generative_blend_differs_from_compositing(triplet):
    fg = np.asarray(triplet.images["foreground"])
    composite = alpha_over(fg, np.asarray(triplet.images["background"]))
    assert np.abs(composite.astype(int) - np.asarray(triplet.images["blend"])).mean() > 1


def test_alpha_blend_equals_compositing_of_returned_layers(engine):
    result = generate(engine, blend="alpha")
    fg = np.asarray(png_round_trip(result.images["foreground"]))
    bg = np.asarray(png_round_trip(result.images["background"]))
    a = fg[..., 3:].astype(float) / 255
    expected = fg[..., :3] * a + bg * (1 - a)
    assert np.abs(np.asarray(result.images["blend"]) - expected).max() <= 0.5 + 1e-9


def test_none_returns_two_layers(engine, triplet):
    result = generate(engine, blend="none")
    assert set(result.images) & set(LAYER_NAMES) == {"foreground", "background"}


def test_deterministic_and_seeded(engine, triplet):
    again = generate(engine)
    for name in ("foreground", "background", "blend"):
        assert np.array_equal(np.asarray(again.images[name]), np.asarray(triplet.images[name]))
    other = generate(engine, seed=8)
    assert not np.array_equal(np.asarray(other.images["background"]), np.asarray(triplet.images["background"]))


def test_pipeline_honours_generator(tiny_pipe):
    def run(seed):
        return tiny_pipe("a", "b", "a, b", height=64, width=64, num_inference_steps=2,
                         generator=torch.Generator().manual_seed(seed))
    first, same, other = run(1), run(1), run(2)
    assert torch.equal(first.blend, same.blend) and not torch.equal(first.blend, other.blend)


@pytest.mark.parametrize("options", [{"prior_mode": "online"}, {"attention_blend": "output_mix"},
                                     {"attention_blend": "joint_softmax"}, {"mask_source": "self"},
                                     {"mask_source": "cross", "boundary_coefficient": 2}, {"sampler": "dpmpp_2m_karras"},
                                     {"foreground_update": False}])
def test_method_options_run_and_change_the_blend(engine, triplet, options):
    result = generate(engine, options=options)
    assert not np.array_equal(np.asarray(result.images["blend"]), np.asarray(triplet.images["blend"]))


def test_progress_and_cancel(engine):
    steps = []
    engine.run(parse_job_request({**BASE, "steps": 3}), preview=True,
               on_step=lambda u: steps.append((u.step, u.total, u.preview)))
    assert [s[:2] for s in steps] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(s[2] is not None and s[2].mode == "RGB" for s in steps)
    calls = []

    def cancel_after_two():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(GenerationCancelled):
        engine.run(parse_job_request({**BASE, "steps": 10}), cancelled=cancel_after_two)
    assert len(calls) == 3  # stopped at the first check after it turned true


def square_layer(x, y):
    """A fully transparent 128x128 layer with an opaque 32x32 red square at (x, y)."""
    layer = Image.new("RGBA", (128, 128), (0, 0, 0, 0))
    layer.paste(Image.new("RGBA", (32, 32), (220, 40, 40, 255)), (x, y))
    return layer


def test_reblend_changes_the_blend_where_the_foreground_moved(engine):
    background = Image.fromarray((np.random.default_rng(0).random((128, 128, 3)) * 255).astype(np.uint8))
    request = {"kind": "reblend", "foreground_prompt": "a red box", "background_prompt": "a wall",
               "background_png": b64(background), "steps": 8, "strength": 0.5, "seed": 3}
    before = engine.run(parse_job_request({**request, "foreground_png": b64(square_layer(16, 48))}))
    after = engine.run(parse_job_request({**request, "foreground_png": b64(square_layer(80, 48))}))
    assert set(before.images) == {"blend"} and before.params["unet_steps"] == 4  # half of 8 steps
    diff = np.abs(np.asarray(before.images["blend"], float) - np.asarray(after.images["blend"], float)).mean(-1)
    moved_area = np.concatenate([diff[48:80, 16:48].ravel(), diff[48:80, 80:112].ravel()]).mean()
    far_away = np.concatenate([diff[:24].ravel(), diff[104:].ravel()]).mean()
    assert moved_area > 2 * far_away and moved_area > 1.0


BAD = [({"foreground_prompt": "  "}, "foreground_prompt"), ({"background_prompt": ""}, "background_prompt"),
       ({"width": 100}, "width"), ({"height": 4104}, "height"), ({"width": 2048, "height": 2048}, "width"),
       ({"steps": 0}, "steps"), ({"blend": "mix"}, "blend"), ({"options": {"boundary": 0.4}}, "options.boundary"),
       ({"options": {"threshold": 1.5}}, "options.threshold"),
       ({"options": {"boundary_coefficient": 0}}, "options.boundary_coefficient"),
       ({"options": {"boundary_coefficient": "sharp"}}, "options.boundary_coefficient"),
       ({"options": {"content_prior": "everywhere"}}, "options.content_prior"),
       ({"options": {"interaction": "loose"}}, "options.interaction"),
       ({"options": {"prior_layer": "up_blocks.9.nothing"}}, "options.prior_layer")]


@pytest.mark.parametrize("change,field", BAD)
def test_bad_generate_input_names_the_field(engine, change, field):
    with pytest.raises(ProtocolError) as err:
        request = parse_job_request({**BASE, **change})
        engine.check(request)
    assert err.value.field == field


@pytest.mark.parametrize("strength", [0, -0.1, 1.5])
def test_bad_strength(strength, triplet):
    with pytest.raises(ProtocolError) as err:
        parse_job_request({"kind": "reblend", "foreground_prompt": "a", "background_prompt": "b",
                           "foreground_png": b64(triplet.images["foreground"]),
                           "background_png": b64(triplet.images["background"]), "strength": strength})
    assert err.value.field == "strength"


@pytest.mark.parametrize("fg_image,field", [
    (lambda t: t.images["background"], "foreground_png"),  # RGB, not RGBA
    (lambda t: t.images["foreground"].resize((72, 64)), "foreground_png"),  # wrong size
])
def test_bad_reblend_images(triplet, fg_image, field):
    with pytest.raises(ProtocolError) as err:
        parse_job_request({"kind": "reblend", "foreground_prompt": "a", "background_prompt": "b",
                           "foreground_png": b64(fg_image(triplet)),
                           "background_png": b64(triplet.images["background"])})
    assert err.value.field == field
