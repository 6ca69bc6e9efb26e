"""Soft and hard blending masks on every attention grid of the UNet (METHOD.md 1.5).

The confidence map x lives on one grid: the finest attention grid for priors, the image for a
re-blend's alpha. The soft mask is x, the hard mask sigmoid(k (x - tau)), both built on that grid and
then area-pooled to each attention layer's coarser grid. [I] Pooling the hard mask (rather than
thresholding a pooled x) keeps a small object in the coarse layers' hard mask as its coverage, where a
threshold after pooling would drop it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from backend.pipeline.priors import combine_priors
from shared.protocol import MaskSource


def hard_mask(x: torch.Tensor, threshold: float, coefficient: float) -> torch.Tensor:
    """The soft decision boundary: sigmoid(k (x - tau)). Higher k = sharper; k = inf is the step
    1[x >= tau]; a small k leaks soft values into the foreground update (METHOD.md 1.5, supplement C)."""
    if math.isinf(coefficient):
        return (x >= threshold).to(x.dtype)
    return torch.sigmoid(coefficient * (x.float() - threshold)).to(x.dtype)


def token_grid(tokens: int, latent_height: int, latent_width: int) -> tuple[int, int]:
    """The (h, w) grid of an attention layer with ``tokens`` queries in a UNet fed this latent.

    Each UNet downsampler is a stride-2 convolution with padding 1, i.e. ceil(n / 2) per level.
    """
    h, w = latent_height, latent_width
    while h * w > tokens:
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    if h * w != tokens:
        raise ValueError(f"no UNet level of a {latent_height}x{latent_width} latent has {tokens} tokens")
    return h, w


def resample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample a [h, w] map: area averaging going down, bilinear going up."""
    if tuple(x.shape) == tuple(size):
        return x
    img = x[None, None].float()
    if size[0] <= x.shape[0] and size[1] <= x.shape[1]:
        out = F.interpolate(img, size=size, mode="area")
    else:
        out = F.interpolate(img, size=size, mode="bilinear", align_corners=False)
    return out[0, 0].to(x.dtype)


@dataclass
class MaskSet:
    """Soft and hard masks of one confidence map for every token count the attention layers use."""

    confidence: torch.Tensor  # [h, w] in [0, 1], on the finest grid
    latent_size: tuple[int, int]
    threshold: float
    coefficient: float
    _cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    @property
    def hard(self) -> torch.Tensor:
        """The hard mask on the confidence map's own grid."""
        return hard_mask(self.confidence.float(), self.threshold, self.coefficient)

    def for_tokens(self, tokens: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(soft, hard), each [tokens], for a layer with that many queries."""
        key = (tokens, device, dtype)
        if key not in self._cache:
            grid = token_grid(tokens, *self.latent_size)
            soft = resample(self.confidence.float(), grid).flatten()
            hard = resample(self.hard, grid).flatten()
            self._cache[key] = (soft.to(device, dtype), hard.to(device, dtype))
        return self._cache[key]

    def on_grid(self, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(soft, hard) as [h, w] images, for inspection and saving."""
        grid = token_grid(tokens, *self.latent_size)
        soft, hard = self.for_tokens(tokens, torch.device("cpu"), torch.float32)
        return soft.reshape(grid), hard.reshape(grid)

    def for_layer(self, block: str, tokens: int, device: torch.device, dtype: torch.dtype
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """One map for every layer (a re-blend's alpha, or the prior-block content reading)."""
        return self.for_tokens(tokens, device, dtype)


@dataclass
class LayerwiseMasks:
    """Masks per transformer block from the layer-wise content prior c_l (METHOD.md 1.4).

    ``content`` holds, per block, the EOS probability of the foreground's conditional row in that
    block's cross-attention, as last recorded (attn2 runs after attn1 in a block, so a layer blends
    with the c_l of the previous UNet call; the prior step provides the first). Each is upsampled to the
    structure prior's grid and combined with it there: x_l = norm(s' * norm(c_l)) for ``product``.
    """

    structure: torch.Tensor  # s' on the prior grid [h, w]
    latent_size: tuple[int, int]
    source: MaskSource
    threshold: float
    coefficient: float
    content: dict[str, torch.Tensor] = field(default_factory=dict)  # block -> [tokens of that block]
    # Where the object may be, on the prior grid ([h, w] in [0, 1]); None = anywhere. x is cut to it.
    region: torch.Tensor | None = None
    _sets: dict[str, tuple[torch.Tensor, MaskSet]] = field(default_factory=dict, repr=False)

    def content_on_grid(self, block: str) -> torch.Tensor:
        """c_l of ``block`` resampled to the structure prior's grid (not normalised)."""
        c = self.content[block].float()
        grid = token_grid(c.numel(), *self.latent_size)
        h, w = self.structure.shape
        return resample(c.reshape(grid), (h, w))

    def mask_set(self, block: str) -> MaskSet:
        if block not in self.content:
            raise RuntimeError(f"no content prior was recorded for '{block}'")
        current = self.content[block]
        entry = self._sets.get(block)
        if entry is None or entry[0] is not current:
            x = combine_priors(self.structure.to(current.device), self.content_on_grid(block), self.source)
            if self.region is not None:
                x = x * self.region.to(x.device, x.dtype)
            entry = (current, MaskSet(x, self.latent_size, self.threshold, self.coefficient))
            self._sets[block] = entry
        return entry[1]

    def for_layer(self, block: str, tokens: int, device: torch.device, dtype: torch.dtype
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mask_set(block).for_tokens(tokens, device, dtype)


def stacking_weights(masks: torch.Tensor) -> torch.Tensor:
    """Per-layer masks [layers, h, w], bottom first -> each layer's visible share
    w_i = m_i * prod_{j > i} (1 - m_j): a layer above covers the ones below. The shares and the
    background's prod_j (1 - m_j) sum to 1 at every pixel."""
    out = torch.empty_like(masks)
    uncovered = torch.ones_like(masks[0])
    for i in reversed(range(masks.shape[0])):
        out[i] = masks[i] * uncovered
        uncovered = uncovered * (1 - masks[i])
    return out


@dataclass
class LayerStack:
    """The masks of given foreground layers (a harmonize or re-blend): each layer's alpha through the
    soft decision boundary, made exclusive by stacking order on the image grid, then area-pooled to
    each attention grid (pooling is linear, so the shares still sum to at most 1 there)."""

    alphas: torch.Tensor  # [layers, H, W] in [0, 1], bottom first
    latent_size: tuple[int, int]
    threshold: float
    coefficient: float
    _cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    @property
    def weights(self) -> torch.Tensor:
        """[layers, H, W]: each layer's share of every pixel."""
        return stacking_weights(hard_mask(self.alphas.float(), self.threshold, self.coefficient))

    def for_tokens(self, tokens: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(weights, weights), each [layers, tokens]: there is no hard mask to update a given layer with."""
        key = (tokens, device, dtype)
        if key not in self._cache:
            grid = token_grid(tokens, *self.latent_size)
            pooled = torch.stack([resample(w, grid).flatten() for w in self.weights]).to(device, dtype)
            self._cache[key] = (pooled, pooled)
        return self._cache[key]

    def for_layer(self, block: str, tokens: int, device: torch.device, dtype: torch.dtype
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.for_tokens(tokens, device, dtype)
