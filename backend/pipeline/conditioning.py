"""SDXL conditioning for the rows of a batched LayerFusion UNet call.

Each branch has its own prompt; with classifier-free guidance every branch also gets an
unconditional row. Rows are laid out as all unconditional rows first, then all conditional rows, in
branch order (FG, BG, BL), so a guidance half is one contiguous slice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class Conditioning:
    """Per-row text embeddings, pooled embeddings and SDXL's added time ids."""

    embeds: torch.Tensor  # [rows, 77, D]
    pooled: torch.Tensor  # [rows, P]
    time_ids: torch.Tensor  # [rows, 6]

    def unet_kwargs(self) -> dict:
        return {
            "encoder_hidden_states": self.embeds,
            "added_cond_kwargs": {"text_embeds": self.pooled, "time_ids": self.time_ids},
        }

    def select(self, rows: list[int]) -> "Conditioning":
        return Conditioning(self.embeds[rows], self.pooled[rows], self.time_ids[rows])


@dataclass
class BranchPrompts:
    """Encoded prompts of the branches: conditional and (when guided) negative, in branch order."""

    embeds: torch.Tensor
    pooled: torch.Tensor
    negative_embeds: torch.Tensor | None
    negative_pooled: torch.Tensor | None

    @property
    def count(self) -> int:
        return self.embeds.shape[0]

    def pick(self, time_ids: torch.Tensor, cond: list[int], uncond: list[int]) -> Conditioning:
        """Arbitrary rows: the given unconditional branches, then the given conditional branches."""
        parts = []
        if uncond:
            assert self.negative_embeds is not None and self.negative_pooled is not None
            parts.append((self.negative_embeds[uncond], self.negative_pooled[uncond]))
        if cond:
            parts.append((self.embeds[cond], self.pooled[cond]))
        embeds = torch.cat([p[0] for p in parts])
        pooled = torch.cat([p[1] for p in parts])
        return Conditioning(embeds, pooled, time_ids.repeat(embeds.shape[0], 1))


def encode_branches(pipe, prompts: list[str], negative_prompt: str, guided: bool, device: torch.device) -> BranchPrompts:
    """Encode every branch prompt in one batch with diffusers' SDXL prompt encoder."""
    embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
        prompt=prompts,
        device=device,
        num_images_per_prompt=1,
        do_classifier_free_guidance=guided,
        negative_prompt=[negative_prompt] * len(prompts) if negative_prompt else None,
    )
    return BranchPrompts(embeds, pooled, negative if guided else None, negative_pooled if guided else None)


# A crop of a larger image: ((original height, width), (top, left)).
CropOrigin = tuple[tuple[int, int], tuple[int, int]]


def time_ids(pipe, height: int, width: int, dtype: torch.dtype, device: torch.device,
             crop: Optional[CropOrigin] = None) -> torch.Tensor:
    """SDXL micro-conditioning: original size = target size = the output, no crop; or, for a crop of a
    larger image, ``crop`` = ((original height, width), (top, left)) as SDXL was trained on crops."""
    projection = pipe.text_encoder_2.config.projection_dim
    original, top_left = crop if crop is not None else ((height, width), (0, 0))
    ids = pipe._get_add_time_ids(original, top_left, (height, width), dtype=dtype,
                                 text_encoder_projection_dim=projection)
    return ids.to(device)
