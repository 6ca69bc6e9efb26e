"""Soft and hard blending masks on every attention grid of the UNet (METHOD.md 1.5).

The confidence map lives on one grid (the prior layer's, or the image for a re-blend's alpha); each
attention layer sees its own token grid, so the map is resampled there before the ramp and threshold
are applied (the hard mask stays binary at every resolution).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


def hard_mask(x: torch.Tensor, boundary: float) -> torch.Tensor:
    """1 where the confidence reaches the boundary tau, else 0."""
    return (x >= boundary).to(x.dtype)


def soft_mask(x: torch.Tensor, boundary: float, softness: float) -> torch.Tensor:
    """A linear ramp of half-width kappa around tau: clamp((x - (tau - kappa)) / (2 kappa), 0, 1).

    kappa is the soft-decision-boundary coefficient; kappa = 0 is the hard mask and tau = kappa = 0.5
    gives back x itself.
    """
    if softness <= 0:
        return hard_mask(x, boundary)
    return ((x - (boundary - softness)) / (2 * softness)).clamp(0.0, 1.0)


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
    """Soft and hard masks for every token count the UNet's attention layers use, built lazily."""

    confidence: torch.Tensor  # [h, w] in [0, 1]
    latent_size: tuple[int, int]
    boundary: float
    softness: float
    _cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    def for_tokens(self, tokens: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(soft, hard), each [tokens], for a layer with that many queries."""
        key = (tokens, device, dtype)
        if key not in self._cache:
            grid = token_grid(tokens, *self.latent_size)
            x = resample(self.confidence, grid).flatten()
            soft = soft_mask(x, self.boundary, self.softness)
            hard = hard_mask(x, self.boundary)
            self._cache[key] = (soft.to(device, dtype), hard.to(device, dtype))
        return self._cache[key]

    def on_grid(self, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(soft, hard) as [h, w] images, for inspection and saving."""
        grid = token_grid(tokens, *self.latent_size)
        soft, hard = self.for_tokens(tokens, torch.device("cpu"), torch.float32)
        return soft.reshape(grid), hard.reshape(grid)
