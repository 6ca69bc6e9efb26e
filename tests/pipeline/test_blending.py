"""Attention-level blending: the identities METHOD.md 1.6 asks to test, and a hand-sized example."""
import math

import pytest
import torch

from backend.pipeline.blending import BlendGroup, attention, attention_probabilities, blended_self_attention
from shared.protocol import AttentionBlend

G = (BlendGroup(0, 1, 2),)


def rows(seed=0, tokens=6, heads=2, dim=4):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, heads, tokens, dim, generator=g) for _ in range(3)]


def plain(q, k, v, i, j=None):
    j = i if j is None else j
    return attention(q[i:i + 1], k[j:j + 1], v[j:j + 1], 0.5)[0]


def test_attention_matches_explicit_softmax_by_hand():
    q = torch.tensor([[[[1.0, 0.0]]]])
    k = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    v = torch.tensor([[[[2.0, 0.0], [0.0, 4.0]]]])
    w = math.exp(1) / (math.exp(1) + 1)  # softmax([1, 0])
    assert torch.allclose(attention(q, k, v, 1.0), torch.tensor([[[[2 * w, 4 * (1 - w)]]]]), atol=1e-6)
    assert torch.allclose(attention_probabilities(q[0], k[0], 1.0), torch.tensor([[w, 1 - w]]), atol=1e-6)


def test_chunked_attention_equals_whole():
    q, k, v = rows(tokens=10)
    assert torch.allclose(attention(q, k, v, 0.5, chunk=3), attention(q, k, v, 0.5), atol=1e-6)


@pytest.mark.parametrize("variant", list(AttentionBlend))
def test_mask_one_and_zero_select_fg_and_bg(variant):
    q, k, v = rows()
    ones, zeros = torch.ones(6), torch.zeros(6)
    out1 = blended_self_attention(q, k, v, G, ones, zeros, scale=0.5, variant=variant)
    out0 = blended_self_attention(q, k, v, G, zeros, zeros, scale=0.5, variant=variant)
    if variant is AttentionBlend.output_mix:  # mixes the FG and BG rows' own outputs
        fg, bg = plain(q, k, v, 0), plain(q, k, v, 1)
    else:  # the blend's queries on FG or BG keys and values
        fg, bg = plain(q, k, v, 2, 0), plain(q, k, v, 2, 1)
    tol = 1e-3 if variant is AttentionBlend.joint_softmax else 1e-5  # its masks are clamped to [eps, 1-eps]
    assert torch.allclose(out1[2], fg, atol=tol)
    assert torch.allclose(out0[2], bg, atol=tol)
    # FG and BG rows keep their ordinary attention when the hard mask is empty (to float rounding: a
    # batched attention call may sum in another order than a single-row one).
    assert torch.allclose(out1[0], plain(q, k, v, 0), atol=1e-6)
    assert torch.allclose(out1[1], plain(q, k, v, 1), atol=1e-6)


def test_shared_blend_mixes_per_query_and_fg_takes_blend_inside_hard_mask():
    q, k, v = rows(1)
    soft = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0, 1.0])
    hard = (soft >= 0.5).float()
    out = blended_self_attention(q, k, v, G, soft, hard, scale=0.5)
    expected = soft.reshape(1, -1, 1) * plain(q, k, v, 2, 0) + (1 - soft.reshape(1, -1, 1)) * plain(q, k, v, 2, 1)
    assert torch.allclose(out[2], expected, atol=1e-6)
    assert torch.allclose(out[0, :, 2:], out[2, :, 2:])  # inside the hard mask the FG takes the blend
    assert torch.allclose(out[0, :, :2], plain(q, k, v, 0)[:, :2], atol=1e-6)
    off = blended_self_attention(q, k, v, G, soft, hard, scale=0.5, foreground_update=False)
    assert torch.allclose(off[0], plain(q, k, v, 0), atol=1e-6)


def test_joint_softmax_weights_keys_by_mask():
    q, k, v = rows(2, tokens=2, heads=1, dim=2)
    soft = torch.tensor([0.2, 0.9])
    out = blended_self_attention(q, k, v, G, soft, torch.zeros(2), scale=1.0, variant=AttentionBlend.joint_softmax)
    keys = torch.cat([k[0, 0], k[1, 0]])  # [4, 2]
    values = torch.cat([v[0, 0], v[1, 0]])
    bias = torch.log(torch.tensor([0.2, 0.9, 0.8, 0.1]))
    weights = torch.softmax(q[2, 0] @ keys.T + bias, dim=-1)
    assert torch.allclose(out[2, 0], weights @ values, atol=1e-5)


def test_two_guidance_halves_blend_independently():
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(6, 2, 4, 4, generator=g) for _ in range(3))
    groups = (BlendGroup(0, 1, 2), BlendGroup(3, 4, 5))
    soft = torch.tensor([0.1, 0.4, 0.6, 0.9])
    both = blended_self_attention(q, k, v, groups, soft, torch.zeros(4), scale=0.5)
    second = blended_self_attention(q[3:], k[3:], v[3:], G, soft, torch.zeros(4), scale=0.5)
    assert torch.allclose(both[3:], second, atol=1e-6)


@pytest.mark.parametrize("variant", list(AttentionBlend))
def test_any_row_order_gives_the_same_blend(variant):
    """Blending follows the groups, not the row order (a re-blend batches its rows differently)."""
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(6, 2, 5, 4, generator=g) for _ in range(3))
    soft = torch.tensor([0.1, 0.4, 0.6, 0.9, 1.0])
    hard = (soft >= 0.5).float()
    regular = blended_self_attention(q, k, v, (BlendGroup(0, 1, 2), BlendGroup(3, 4, 5)), soft, hard,
                                     scale=0.5, variant=variant)
    order = [2, 5, 0, 3, 1, 4]  # new row i holds old row order[i]
    where = {old: new for new, old in enumerate(order)}
    groups = tuple(BlendGroup(where[3 * h], where[3 * h + 1], where[3 * h + 2]) for h in range(2))
    shuffled = blended_self_attention(q[order], k[order], v[order], groups, soft, hard, scale=0.5, variant=variant)
    assert torch.allclose(shuffled, regular[order], atol=1e-6)
