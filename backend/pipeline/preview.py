"""Cheap progress previews: an affine latent -> RGB map fitted to the model's own VAE.

A full VAE decode per step would cost as much as a denoising step on SDXL. Instead the VAE decodes a
handful of constant latents once, and a least-squares fit gives each latent channel's colour; any
latent then previews at latent resolution for the price of one small matrix product.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from backend.pipeline.decoding import decode_rgb


class LatentPreviewer:
    def __init__(self, vae) -> None:
        self.vae = vae
        self._weights: torch.Tensor | None = None  # [channels + 1, 3]

    def _fit(self) -> torch.Tensor:
        channels = self.vae.config.latent_channels
        probes = [torch.zeros(channels)]
        for c in range(channels):
            for sign in (1.0, -1.0):
                probe = torch.zeros(channels)
                probe[c] = sign
                probes.append(probe)
        values = torch.stack(probes)  # [P, channels], in diffusion units
        latents = values[:, :, None, None].expand(-1, -1, 8, 8).to(self.vae.device, self.vae.dtype)
        with torch.no_grad():
            colours = decode_rgb(self.vae, latents).mean(dim=(2, 3)).cpu()  # [P, 3]
        design = torch.cat([values, torch.ones(len(probes), 1)], dim=1)
        return torch.linalg.lstsq(design, colours).solution  # [channels + 1, 3]

    def __call__(self, latent: torch.Tensor) -> Image.Image:
        if self._weights is None:
            self._weights = self._fit()
        x = latent.detach().float().cpu().permute(1, 2, 0)  # [h, w, channels]
        rgb = x @ self._weights[:-1] + self._weights[-1]
        array = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        return Image.fromarray(np.ascontiguousarray(array), "RGB")
