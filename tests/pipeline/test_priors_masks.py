"""Priors and masks against values computed by hand (METHOD.md 1.4-1.5 worked example)."""
import math

import pytest
import torch

from backend.pipeline.masks import LayerwiseMasks, MaskSet, hard_mask, resample, token_grid
from backend.pipeline.priors import combine_priors, content_prior, eos_position, minmax, structure_prior
from shared.protocol import MaskSource

# Four query rows of a 4-token self-attention map.
M = torch.tensor([[1.0, 0.0, 0.0, 0.0],
                  [0.25, 0.25, 0.25, 0.25],
                  [0.5, 0.5, 0.0, 0.0],
                  [0.7, 0.1, 0.1, 0.1]])
C = torch.tensor([0.30, 0.05, 0.20, 0.10])


def test_structure_prior_worked_example():
    # s = 1/sum m^2 = [1, 4, 2, 1/0.52]; norm = (s-1)/3; s' = 1 - norm.
    expected = torch.tensor([1.0, 0.0, 1 - 1 / 3, 1 - (1 / 0.52 - 1) / 3])
    assert torch.allclose(structure_prior(M), expected, atol=1e-6)
    assert torch.allclose(structure_prior(M), torch.tensor([1.0, 0.0, 0.6667, 0.6923]), atol=1e-4)


def test_structure_prior_averages_heads_first():
    # Two heads whose mean is M: per-head sparsity would differ, the head mean must be used.
    a = torch.tensor([[1.0, 0, 0, 0], [0.5, 0, 0.5, 0], [1.0, 0, 0, 0], [0.4, 0.2, 0.2, 0.2]])
    b = 2 * M - a
    assert torch.allclose(structure_prior(torch.stack([a, b])), structure_prior(M), atol=1e-6)


def test_structure_prior_without_structure_is_zero():
    assert torch.equal(structure_prior(torch.full((3, 3), 1 / 3)), torch.zeros(3))


def test_content_prior_reads_eos_column_head_mean():
    h1 = torch.tensor([[0.1, 0.5, 0.4], [0.2, 0.2, 0.6]])
    h2 = torch.tensor([[0.3, 0.3, 0.4], [0.0, 0.4, 0.6]])
    assert torch.allclose(content_prior(torch.stack([h1, h2]), 1), torch.tensor([0.4, 0.3]))


def test_combined_confidence_worked_example():
    s = structure_prior(M)
    c_hat = minmax(C)
    assert torch.allclose(c_hat, torch.tensor([1.0, 0.0, 0.6, 0.2]), atol=1e-6)
    product = combine_priors(s, C, MaskSource.product)
    # s' * c_hat = [1, 0, 0.4, 0.1385] is already spanning [0, 1].
    assert torch.allclose(product, torch.tensor([1.0, 0.0, 0.4, 0.13846]), atol=1e-4)
    assert torch.allclose(combine_priors(s, C, MaskSource.self_attention), s)
    assert torch.allclose(combine_priors(s, C, MaskSource.cross_attention), c_hat)


def test_eos_position_takes_first_end_token():
    assert eos_position([0, 7, 8, 1, 1, 1], eos_token_id=1) == 3
    assert eos_position([0, 7, 8, 9], eos_token_id=1) == 3  # truncated: last position


def test_hard_mask_by_hand():
    x = torch.tensor([0.0, 0.2, 0.5, 0.6, 1.0])
    # k = inf is the step 1[x >= tau].
    assert torch.equal(hard_mask(x, 0.5, math.inf), torch.tensor([0.0, 0, 1, 1, 1]))
    # sigma(k (x - tau)) at known points, k = 10, tau = 0.5: sigma(-5), sigma(-3), sigma(0), sigma(1), sigma(5).
    expected = torch.tensor([1 / (1 + math.exp(5)), 1 / (1 + math.exp(3)), 0.5, 1 / (1 + math.exp(-1)),
                             1 / (1 + math.exp(-5))])
    assert torch.allclose(hard_mask(x, 0.5, 10.0), expected, atol=1e-6)
    assert torch.allclose(hard_mask(x, 0.2, 10.0)[1], torch.tensor(0.5))  # tau moves the midpoint


def test_higher_coefficient_means_a_sharper_boundary():
    """The paper's direction (supplement C): the share of non-binary values falls as k grows."""
    x = torch.linspace(0, 1, 1001)

    def fuzzy(k: float) -> float:
        m = hard_mask(x, 0.5, k)
        return float(((m > 0.01) & (m < 0.99)).float().mean())

    shares = [fuzzy(k) for k in (1.0, 5.0, 10.0, 20.0, 100.0, math.inf)]
    # k = 1 and 5 leave every value fuzzy; from there on each step up is sharper, down to the step.
    assert shares[0] == shares[1] == 1.0 and shares[-1] == 0.0
    assert all(a > b for a, b in zip(shares[1:], shares[2:])), shares


@pytest.mark.parametrize("tokens,latent,grid", [(64, (8, 8), (8, 8)), (16, (8, 8), (4, 4)),
                                                (4, (8, 8), (2, 2)), (6, (9, 5), (3, 2)), (15, (9, 9), None)])
def test_token_grid(tokens, latent, grid):
    if grid is None:
        with pytest.raises(ValueError):
            token_grid(tokens, *latent)
    else:
        assert token_grid(tokens, *latent) == grid


def test_resample_area_down_and_mask_set():
    x = torch.tensor([[0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(resample(x, (2, 2)), torch.tensor([[0.25, 1.0], [0.0, 0.25]]))
    masks = MaskSet(x, latent_size=(4, 4), threshold=0.5, coefficient=math.inf)
    soft, hard = masks.on_grid(4)
    assert torch.allclose(soft, torch.tensor([[0.25, 1.0], [0.0, 0.25]]))  # the soft mask is x, pooled
    # The hard mask is built on the fine grid, then pooled: coverage 1/4, 1, 0, 1/4.
    assert torch.allclose(hard, torch.tensor([[0.25, 1.0], [0.0, 0.25]]))
    full_soft, full_hard = masks.for_tokens(16, torch.device("cpu"), torch.float32)
    assert torch.equal(full_hard, hard_mask(x.flatten(), 0.5, math.inf))


def test_a_small_object_keeps_a_hard_mask_on_a_coarse_grid():
    """A 2x2 object on a 16x16 grid: thresholding after pooling (the old rule) loses it at 4x4;
    pooling the fine hard mask keeps it as its coverage, 4 of 16 fine tokens."""
    x = torch.zeros(16, 16)
    x[5:7, 9:11] = 1.0
    old_rule = (resample(x, (4, 4)) >= 0.5).float()
    assert old_rule.sum() == 0
    _, hard = MaskSet(x, latent_size=(16, 16), threshold=0.5, coefficient=math.inf).on_grid(16)
    expected = torch.zeros(4, 4)
    expected[1, 2] = 0.25
    assert torch.allclose(hard, expected)


def test_layerwise_masks_use_each_blocks_own_content():
    """x_l = norm(s' * norm(c_l up to the prior grid)), per block; perturbing one block's content
    changes only that block's masks."""
    structure = torch.tensor([[1.0, 0.5], [0.0, 0.25]])  # the prior grid: 2x2 (latent 2x2)
    content = {"a": torch.tensor([0.1, 0.3, 0.2, 0.4]), "b": torch.tensor([0.4, 0.1, 0.1, 0.1])}
    masks = LayerwiseMasks(structure, (2, 2), MaskSource.product, threshold=0.5, coefficient=math.inf,
                           content=dict(content))
    cpu = torch.device("cpu")
    # By hand, block a: norm(c) = [0, 2/3, 1/3, 1]; s' * that = [0, 1/3, 0, 1/4]; norm -> [0, 1, 0, 3/4].
    soft_a, hard_a = masks.for_layer("a", 4, cpu, torch.float32)
    assert torch.allclose(soft_a, torch.tensor([0.0, 1.0, 0.0, 0.75]))
    assert torch.equal(hard_a, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    # Block b: norm(c) = [1, 0, 0, 0] -> s' * that = [1, 0, 0, 0].
    soft_b, _ = masks.for_layer("b", 4, cpu, torch.float32)
    assert torch.allclose(soft_b, torch.tensor([1.0, 0.0, 0.0, 0.0]))
    masks.content["a"] = torch.tensor([0.4, 0.3, 0.2, 0.1])
    assert not torch.allclose(masks.for_layer("a", 4, cpu, torch.float32)[0], soft_a)
    assert torch.equal(masks.for_layer("b", 4, cpu, torch.float32)[0], soft_b)
    # A coarser block's content (1 token on a 1x1 grid) is upsampled to the prior grid first.
    masks.content["c"] = torch.tensor([0.7])
    assert masks.content_on_grid("c").shape == (2, 2)
