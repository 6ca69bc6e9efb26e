"""LayerFusion's generative priors, read from the foreground model's own attention (METHOD.md 1.4).

Pure tensor functions: they take attention probabilities and return one value per image token.
"""
from __future__ import annotations

import torch

from shared.protocol import MaskSource

EPS = 1e-6


def minmax(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Min-max normalisation to [0, 1]; a (near-)constant input has no structure and maps to zeros."""
    lo, hi = x.min(), x.max()
    span = hi - lo
    # Branch-free (no device-to-host sync): it runs in every blended layer with layer-wise priors.
    return torch.where(span < eps, torch.zeros_like(x), (x - lo) / span.clamp_min(eps))


def structure_prior(self_attention: torch.Tensor) -> torch.Tensor:
    """s' = 1 - norm(1 / sum_j m_ij^2) from self-attention probabilities [heads, M, M] or [M, M].

    Heads are averaged first (the paper's map is one M x M matrix). 1 / sum_j m_ij^2 is the effective
    number of tokens a query attends to: focused rows (object structure) score near 1 after the flip,
    diffuse rows (the flat transparent area of a LayerDiffuse latent) near 0.
    """
    m = self_attention.float()
    if m.dim() == 3:
        m = m.mean(dim=0)
    spread = 1.0 / m.pow(2).sum(dim=-1).clamp_min(EPS)
    normed = minmax(spread)
    if normed.max() == 0:  # all rows equally spread: no structure anywhere
        return normed
    return 1.0 - normed


def content_prior(cross_attention: torch.Tensor, eos_index: int) -> torch.Tensor:
    """c_i: cross-attention probability of image token i on the prompt's end-of-text token.

    ``cross_attention`` is [heads, M, T] or [M, T]; heads are averaged. Not normalised here.
    """
    p = cross_attention.float()
    if p.dim() == 3:
        p = p.mean(dim=0)
    return p[:, eos_index]


def combine_priors(structure: torch.Tensor, content: torch.Tensor, source: MaskSource) -> torch.Tensor:
    """The confidence x in [0, 1] that a token belongs to the foreground object.

    product (default): both priors must agree, x = norm(s' * norm(c)); self / cross: one prior alone,
    for the paper's ablations.
    """
    if source is MaskSource.self_attention:
        return minmax(structure)
    if source is MaskSource.cross_attention:
        return minmax(content)
    return minmax(structure * minmax(content))


def eos_position(input_ids: list[int], eos_token_id: int) -> int:
    """Index of the first end-of-text token (tokenizer 1 pads with EOS, so later ones are padding)."""
    for i, token in enumerate(input_ids[1:], start=1):
        if token == eos_token_id:
            return i
    return len(input_ids) - 1  # truncated prompt: the last position
