"""Several foreground layers in one blend: stacking weights by hand, and the blend they steer."""
import pytest
import torch

from backend.pipeline.blending import BlendGroup, attention, blended_self_attention
from backend.pipeline.masks import LayerStack, stacking_weights
from shared.protocol import AttentionBlend


def rows(count, seed=0, tokens=4, heads=2, dim=4):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(count, heads, tokens, dim, generator=g) for _ in range(3)]


def on(q, k, v, i, j):
    return attention(q[i:i + 1], k[j:j + 1], v[j:j + 1], 0.5)[0]


def test_stacking_weights_by_hand():
    # Two layers over four pixels: bottom m1, top m2 (top covers bottom).
    m = torch.tensor([[1.0, 1.0, 0.5, 0.0],
                      [0.0, 1.0, 0.5, 0.0]])
    w = stacking_weights(m)
    assert torch.allclose(w[1], torch.tensor([0.0, 1.0, 0.5, 0.0]))  # the top layer keeps its mask
    assert torch.allclose(w[0], torch.tensor([1.0, 0.0, 0.25, 0.0]))  # 0.5 * (1 - 0.5) where both are half
    background = 1 - w.sum(0)
    assert torch.allclose(background, torch.tensor([0.0, 0.0, 0.25, 1.0]))  # (1 - 0.5)(1 - 0.5)


def test_layer_stack_pools_exclusive_weights_per_grid():
    alphas = torch.zeros(2, 16, 16)
    alphas[0, :, :8] = 1  # bottom: left half
    alphas[1, :8, :] = 1  # top: upper half, over the bottom's upper-left quarter
    stack = LayerStack(alphas, (16, 16), threshold=0.5, coefficient=float("inf"))
    soft, _ = stack.for_tokens(4, torch.device("cpu"), torch.float32)  # a 2x2 grid
    # Quarters (row-major): UL both -> top wins, UR top, LL bottom, LR background.
    assert torch.allclose(soft, torch.tensor([[0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]]))


@pytest.mark.parametrize("variant", [AttentionBlend.shared, AttentionBlend.output_mix])
def test_two_layers_mix_their_attention_by_weight(variant):
    q, k, v = rows(4)  # rows: FG1, FG2, BG, BL
    group = (BlendGroup(0, 2, 3, stacked=(1,)),)
    w = torch.tensor([[1.0, 0.0, 0.2, 0.0], [0.0, 1.0, 0.3, 0.0]])
    out = blended_self_attention(q, k, v, group, w, w, scale=0.5, variant=variant, foreground_update=False)
    if variant is AttentionBlend.shared:
        fg1, fg2, bg = on(q, k, v, 3, 0), on(q, k, v, 3, 1), on(q, k, v, 3, 2)
    else:
        fg1, fg2, bg = on(q, k, v, 0, 0), on(q, k, v, 1, 1), on(q, k, v, 2, 2)
    for token, (a, b) in enumerate([(1.0, 0.0), (0.0, 1.0), (0.2, 0.3), (0.0, 0.0)]):
        expected = a * fg1[:, token] + b * fg2[:, token] + (1 - a - b) * bg[:, token]
        assert torch.allclose(out[3][:, token], expected, atol=1e-6), token
    for r in range(3):  # the given rows keep their own attention
        assert torch.allclose(out[r], on(q, k, v, r, r), atol=1e-6)


def test_joint_softmax_over_two_layers_biases_each_layers_keys():
    q, k, v = rows(4, seed=3, tokens=2, heads=1, dim=2)
    group = (BlendGroup(0, 2, 3, stacked=(1,)),)
    w = torch.tensor([[0.5, 0.1], [0.2, 0.6]])
    out = blended_self_attention(q, k, v, group, w, w, scale=1.0, variant=AttentionBlend.joint_softmax,
                                 foreground_update=False)
    keys = torch.cat([k[0, 0], k[1, 0], k[2, 0]])
    values = torch.cat([v[0, 0], v[1, 0], v[2, 0]])
    bias = torch.log(torch.tensor([0.5, 0.1, 0.2, 0.6, 0.3, 0.3]))  # FG1 keys, FG2 keys, BG keys (the rest)
    expected = torch.softmax(q[3, 0] @ keys.T + bias, dim=-1) @ values
    assert torch.allclose(out[3, 0], expected, atol=1e-5)


@pytest.mark.parametrize("variant", list(AttentionBlend))
def test_one_stacked_layer_is_the_single_mask_blend(variant):
    q, k, v = rows(3, seed=5, tokens=6)
    soft = torch.tensor([0.0, 0.1, 0.5, 0.7, 1.0, 0.3])
    single = blended_self_attention(q, k, v, (BlendGroup(0, 1, 2),), soft, soft, scale=0.5, variant=variant,
                                    foreground_update=False)
    stacked = blended_self_attention(q, k, v, (BlendGroup(0, 1, 2),), soft[None], soft[None], scale=0.5,
                                     variant=variant, foreground_update=False)
    assert torch.equal(single, stacked)


def test_a_group_must_have_one_row_per_weight_map():
    q, k, v = rows(4)
    with pytest.raises(ValueError, match="one foreground row per weight map"):
        blended_self_attention(q, k, v, (BlendGroup(0, 2, 3),), torch.ones(2, 4), torch.ones(2, 4), scale=0.5,
                               foreground_update=False)
