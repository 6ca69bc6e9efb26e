"""What a loaded model consists of, as the pipeline consumes it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from backend.models.lowrank import LowRankDelta


@dataclass(frozen=True)
class Architecture:
    """Facts about a model family that requests are checked against before any GPU work."""

    name: str
    default_size: tuple[int, int]
    max_pixels: int
    # Where the decoder of the transparent VAE adds the latent: log2 of the VAE's downscale.
    latent_level: int = 3


SDXL = Architecture("sdxl", default_size=(1024, 1024), max_pixels=2048 * 2048)
TINY = Architecture("tiny", default_size=(128, 128), max_pixels=1024 * 1024)


@dataclass
class ModelBundle:
    """SDXL components plus LayerDiffuse's parts, on one device in one dtype."""

    name: str
    architecture: Architecture
    unet: Any  # diffusers UNet2DConditionModel
    vae: Any  # diffusers AutoencoderKL
    text_encoder: Any  # transformers CLIPTextModel
    text_encoder_2: Any  # transformers CLIPTextModelWithProjection
    tokenizer: Any
    tokenizer_2: Any
    scheduler_config: dict
    transparent_attn: LowRankDelta
    transparent_decoder: nn.Module
    transparent_encoder: nn.Module
    # The encoder's output is an offset in VAE-latent units times this (METHOD.md section 2.4).
    transparent_encoder_scale: float = 1.0
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    # Memory options chosen at load (backend.models.loading.LoadOptions). With cpu_offload the modules
    # stay in RAM and the pipeline moves each onto ``device`` only while it runs.
    cpu_offload: bool = False
    vae_tiling: bool = False
    attention_slicing: bool = False
    # Where each part came from, for logs and /v1/models.
    sources: dict = field(default_factory=dict)

    @property
    def parameter_bytes(self) -> int:
        """Resident parameter memory: every module plus the low-rank offsets."""
        total = self.transparent_attn.nbytes
        for module in (self.unet, self.vae, self.text_encoder, self.text_encoder_2,
                       self.transparent_decoder, self.transparent_encoder):
            total += sum(p.numel() * p.element_size() for p in module.parameters())
        return total

    def describe_device(self) -> str:
        return f"{self.device} ({str(self.dtype).replace('torch.', '')})"
