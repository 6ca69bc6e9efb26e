"""The method as the paper states it (METHOD.md 1.4, 1.5, 1.7), on the tiny model: one set of layers for
every blend mode, the layer-wise content prior recomputed by hand, the maps the method saw."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from backend.pipeline import attention as attention_module
from shared.fields import ProtocolError
from shared.protocol import LAYER_NAMES, MAP_NAMES, parse_job_request
from tests.pipeline.test_generation import BASE, b64, generate, square_layer


@pytest.fixture(scope="module")
def modes(engine):
    return {blend: generate(engine, blend=blend) for blend in ("generative", "alpha", "none")}


def test_every_blend_mode_returns_the_same_layers(modes):
    """One seed: the foreground and background are the method's, bit for bit, whatever the blend."""
    reference = modes["generative"].images
    for blend in ("alpha", "none"):
        for name in ("foreground", "background"):
            assert np.array_equal(np.asarray(modes[blend].images[name]), np.asarray(reference[name])), (blend, name)
    assert "blend" not in modes["none"].images
    assert set(modes["none"].images) == {"foreground", "background", *MAP_NAMES}


def test_independent_is_the_two_branch_baseline(engine, modes):
    fused = modes["alpha"].images
    independent = generate(engine, blend="alpha", options={"interaction": "independent"})
    assert independent.params["unet_steps"] == BASE["steps"]  # no prior pass
    assert not any(name in independent.images for name in MAP_NAMES)  # no priors read
    # The background never takes from the other rows, so it is the same image (batching aside) ...
    bg_diff = np.abs(np.asarray(independent.images["background"], int) - np.asarray(fused["background"], int))
    assert bg_diff.max() <= 1
    # ... while the foreground is no longer shaped by the blend branch.
    fg_diff = np.abs(np.asarray(independent.images["foreground"], int) - np.asarray(fused["foreground"], int))
    assert fg_diff.mean() > 0.5
    with pytest.raises(ProtocolError) as err:
        parse_job_request({**BASE, "options": {"interaction": "independent"}})  # generative has no branch
    assert err.value.field == "options.interaction" and err.value.status == 422


def test_the_maps_are_kept_at_image_size(modes):
    images = modes["generative"].images
    for name in MAP_NAMES:
        assert images[name].mode == "L" and images[name].size == (BASE["width"], BASE["height"]), name
    assert np.asarray(images["structure_prior"]).std() > 1  # a map, not a blank


def test_the_kept_hard_mask_is_the_one_used(engine, monkeypatch):
    """With the prior block's reading every layer blends with one mask: the kept mask_hard, taken
    back down to the prior grid, is what the finest layers were given."""
    used = []
    real = attention_module.blended_self_attention

    def recording(q, k, v, groups, soft, hard, **kwargs):
        used.append(hard.detach().clone())
        return real(q, k, v, groups, soft, hard, **kwargs)

    monkeypatch.setattr(attention_module, "blended_self_attention", recording)
    result = generate(engine, options={"content_prior": "prior_block", "boundary_coefficient": "inf"})
    finest = max(h.numel() for h in used)
    side = int(math.isqrt(finest))
    kept = np.asarray(result.images["mask_hard"].resize((side, side), 0), float) / 255  # 0 = nearest
    first = next(h for h in used if h.numel() == finest).reshape(side, side).numpy()
    assert np.array_equal(kept, first)
    assert all(torch.equal(h, used[0]) for h in used if h.numel() == finest)  # one mask for all steps


def _attn2_inputs(tiny_pipe):
    """Records each attn2's inputs during two-row calls (the restart prior pass: FG_u, FG_c)."""
    seen = {}

    def hook(name):
        def pre(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            if hidden.shape[0] == 2:
                seen[name] = (hidden.detach().clone(), kwargs["encoder_hidden_states"].detach().clone())
        return pre

    handles = [m.register_forward_pre_hook(hook(n), with_kwargs=True)
               for n, m in tiny_pipe.unet.named_modules() if n.endswith(".attn2")]
    return seen, handles


def test_layerwise_content_prior_by_hand(tiny_pipe):
    seen, handles = _attn2_inputs(tiny_pipe)
    try:
        out = tiny_pipe("a glass of water", "a wooden table", "a glass of water, a wooden table",
                        height=64, width=64, num_inference_steps=4, generator=torch.Generator().manual_seed(3))
    finally:
        for handle in handles:
            handle.remove()
    eos = len(tiny_pipe.tokenizer("a glass of water").input_ids) - 1
    modules = dict(tiny_pipe.unet.named_modules())
    by_hand = {}
    for name, (hidden, context) in seen.items():
        attn, delta, block = modules[name], tiny_pipe._row_deltas[name], name.rsplit(".", 1)[0]
        x, c = hidden[1:2], context[1:2]  # the conditional foreground row, with its transparent offsets
        q = delta.project(attn.to_q, "to_q", x, (0,))
        k = delta.project(attn.to_k, "to_k", c, (0,))
        heads, d = attn.heads, q.shape[-1] // attn.heads
        q = q.view(1, -1, heads, d).transpose(1, 2)[0]
        k = k.view(1, -1, heads, d).transpose(1, 2)[0]
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)  # [heads, M, T]
        by_hand[block] = probs[:, :, eos].mean(dim=0)
        assert torch.allclose(out.content[block], by_hand[block], atol=1e-5), block
    assert len(by_hand) >= 2 and set(by_hand) == set(out.content)
    same_size = [b for b in by_hand if by_hand[b].numel() == by_hand[sorted(by_hand)[0]].numel()]
    assert len(same_size) >= 2
    assert not torch.allclose(by_hand[same_size[0]], by_hand[same_size[1]])  # each block its own prior


def test_content_prior_readings_give_different_blends(engine, modes):
    prior_block = generate(engine, options={"content_prior": "prior_block"})
    assert not np.array_equal(np.asarray(prior_block.images["blend"]), np.asarray(modes["generative"].images["blend"]))


def test_reblend_honours_the_threshold(engine):
    background = Image.fromarray((np.random.default_rng(0).random((128, 128, 3)) * 255).astype(np.uint8))
    layer = np.asarray(square_layer(40, 40)).copy()
    layer[40:72, 40:72, 3] = 150  # a half-opaque object: tau decides whether it counts as object
    request = {"kind": "reblend", "foreground_prompt": "a red box", "background_prompt": "a wall",
               "foreground_png": b64(Image.fromarray(layer, "RGBA")), "background_png": b64(background),
               "steps": 4, "strength": 0.5, "seed": 3}
    low = engine.run(parse_job_request({**request, "options": {"threshold": 0.3}}))
    high = engine.run(parse_job_request({**request, "options": {"threshold": 0.9}}))
    assert set(low.images) == {"blend"} and set(LAYER_NAMES) >= set(low.images)
    assert not np.array_equal(np.asarray(low.images["blend"]), np.asarray(high.images["blend"]))
