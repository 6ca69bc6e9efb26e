"""Priors and masks against values computed by hand (METHOD.md 1.4-1.5 worked example)."""
import pytest
import torch

from backend.pipeline.masks import MaskSet, hard_mask, resample, soft_mask, token_grid
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


def test_masks_by_hand():
    x = torch.tensor([0.0, 0.2, 0.5, 0.6, 1.0])
    assert torch.equal(hard_mask(x, 0.5), torch.tensor([0.0, 0, 1, 1, 1]))
    assert torch.allclose(soft_mask(x, 0.5, 0.5), x)  # tau = kappa = 0.5 gives x back
    # tau 0.5, kappa 0.1: ramp from 0.4 to 0.6.
    assert torch.allclose(soft_mask(x, 0.5, 0.1), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]), atol=1e-6)
    assert torch.equal(soft_mask(x, 0.5, 0.0), hard_mask(x, 0.5))


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
    masks = MaskSet(x, latent_size=(4, 4), boundary=0.5, softness=0.5)
    soft, hard = masks.on_grid(4)
    assert torch.allclose(soft, torch.tensor([[0.25, 1.0], [0.0, 0.25]]))
    assert torch.equal(hard, torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    full_soft, full_hard = masks.for_tokens(16, torch.device("cpu"), torch.float32)
    assert torch.equal(full_hard, hard_mask(x.flatten(), 0.5))
