"""Checks that need the published files; skipped unless LAYERFUSION_REAL_MODELS_DIR points at a folder
holding them (ComfyUI layout: layer_model/ with both attention layouts, both encoders).

They settle what METHOD.md 2.2.2 / 2.2.3 could only infer: that the original LoRA's ldm block names map
onto diffusers' names by the standard rule (not jnkl314's swapped 7.1/8.1), that the dense diffusers
file is the same offsets densified (rank <= 256), and what the encoders' scales are for.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from backend.models import layerdiffuse
from backend.models.validate import check_file, meta_unet
from backend.models.weight_files import load_tensors

ROOT = os.environ.get("LAYERFUSION_REAL_MODELS_DIR")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not ROOT, reason="LAYERFUSION_REAL_MODELS_DIR not set")]


def layer_file(name: str) -> Path:
    path = Path(ROOT or "", "layer_model", name)
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path


def test_every_published_layerdiffuse_file_checks_at_full_size():
    for name in (layerdiffuse.ATTN_ORIGINAL, layerdiffuse.ATTN_DIFFUSERS, *layerdiffuse.DECODER_FILES,
                 *layerdiffuse.ENCODER_SCALES):
        path = Path(ROOT or "", "layer_model", name)
        if path.is_file():
            assert check_file(path, "sdxl").model == "sdxl"


def test_lora_mapping_reproduces_the_dense_offsets():
    unet = meta_unet("sdxl")
    lora = layerdiffuse.load_attention(layer_file(layerdiffuse.ATTN_ORIGINAL), unet)
    dense = load_tensors(layer_file(layerdiffuse.ATTN_DIFFUSERS))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    worst = 0.0
    for name, (up, down) in lora.factors.items():
        offset = dense[f"{name}.weight"].to(device, torch.float32)
        product = up.to(device) @ down.to(device)
        worst = max(worst, ((product - offset).norm() / offset.norm().clamp_min(1e-12)).item())
    assert worst < 1e-2, worst  # fp16 storage of both files
    # The swapped mapping some ports use must be clearly worse on the stacks it swaps.
    a = "down_blocks.2.attentions.0.transformer_blocks.0.attn1.to_q"
    b = "down_blocks.2.attentions.1.transformer_blocks.0.attn1.to_q"
    up, down = lora.factors[a]
    swapped = ((up @ down) - dense[f"{b}.weight"].float()).norm() / dense[f"{b}.weight"].float().norm()
    assert swapped > 0.5


def test_dense_offsets_are_rank_256():
    dense = load_tensors(layer_file(layerdiffuse.ATTN_DIFFUSERS))
    name = "up_blocks.1.attentions.2.transformer_blocks.1.attn1.to_q.weight"
    values = torch.linalg.svdvals(dense[name].float())
    assert values[256:].max() < 1e-2 * values[0]
