"""Checks that need the published files; skipped unless LAYERFUSION_REAL_MODELS_DIR points at a folder
holding them (ComfyUI layout: layer_model/ with both attention layouts, both encoders).

They settle what METHOD.md 2.2.2 / 2.2.3 could only infer: that the original LoRA's ldm block names map
onto diffusers' names by the standard rule (not jnkl314's swapped 7.1/8.1), that the dense diffusers
file is the same offsets densified (rank <= 256), and what the encoders' scales are for: both encoder
files are one encoder, whose x300 (METHOD.md 2.4) gives a better alpha round trip than x1 (needs an SDXL
VAE file in vae/). Run with ``-s`` to see the dense file's extra keys and the round-trip errors.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from backend.models import file_kinds, layerdiffuse
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
                 *layerdiffuse.ENCODER_FILES):
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


def test_both_encoder_files_are_one_encoder():
    first, second = (layer_file(name) for name in layerdiffuse.ENCODER_FILES)
    if first.read_bytes() != second.read_bytes():
        a, b = load_tensors(first), load_tensors(second)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert layerdiffuse.encoder_scale_for(first) == layerdiffuse.encoder_scale_for(second) == 300.0


def sdxl_vae_file() -> Path:
    for path in sorted(Path(ROOT or "", "vae").glob("*.safetensors")):
        if file_kinds.identify(layerdiffuse.read_header(path)) in ("vae-original", "diffusers-vae"):
            return path
    pytest.skip("no SDXL VAE file in vae/ for the encode-decode round trip")


def test_alpha_round_trip_is_better_at_x300_than_at_x1():
    from backend.models import single_file
    from backend.models.transparent_vae import (
        FULL_DECODER_CHANNELS,
        FULL_ENCODER_CHANNELS,
        decode_rgba,
        encode_rgba,
    )

    encoder_path = next((p for p in (Path(ROOT or "", "layer_model", n) for n in layerdiffuse.ENCODER_FILES)
                         if p.is_file()), None)
    decoder_path = next((p for p in (Path(ROOT or "", "layer_model", n) for n in layerdiffuse.DECODER_FILES)
                         if p.is_file()), None)
    if encoder_path is None or decoder_path is None:
        pytest.skip("needs a transparent encoder and decoder")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # fp32 throughout: the SDXL VAE overflows in fp16 (METHOD.md 2.6).
    vae = single_file.load_vae_file(sdxl_vae_file(), single_file.read_config(single_file.SDXL_CONFIG_DIR, "vae"))
    vae = vae.to(device).eval()
    encoder = layerdiffuse.load_encoder(encoder_path, FULL_ENCODER_CHANNELS).to(device)
    decoder = layerdiffuse.load_decoder(decoder_path, FULL_DECODER_CHANNELS).to(device)
    # A soft-edged red disc on a transparent field, 256x256 (a multiple of the decoder's 64).
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 256), torch.linspace(-1, 1, 256), indexing="ij")
    alpha = ((0.6 - (xs ** 2 + ys ** 2).sqrt()) * 20).clamp(0, 1)
    rgb = torch.stack([torch.full_like(xs, 0.9), 0.2 + 0.3 * (xs + 1) / 2, torch.full_like(xs, 0.1)])
    rgba = torch.cat([rgb, alpha[None]])[None].to(device)
    errors = {}
    with torch.no_grad():
        for scale in (1.0, layerdiffuse.LAYERDIFFUSE_ENCODER_SCALE):
            raw = encode_rgba(vae, encoder, rgba, offset_scale=scale) / vae.config.scaling_factor
            pixel = (vae.decode(raw).sample * 0.5 + 0.5).clamp(0, 1)
            out = decode_rgba(decoder, pixel, raw, tta=False)
            errors[scale] = (out[:, 3] - rgba[:, 3]).abs().mean().item()
    print("alpha round-trip mean abs error by encoder scale:", errors)
    assert errors[layerdiffuse.LAYERDIFFUSE_ENCODER_SCALE] < errors[1.0], errors


def test_dense_file_keys_beyond_the_projection_weights():
    path = layer_file(layerdiffuse.ATTN_DIFFUSERS)
    header = layerdiffuse.read_header(path)
    weights = {f"{name}.weight" for name in layerdiffuse.attention_projections(meta_unet("sdxl"))}
    extra = sorted(set(header) - weights)
    print(f"{path.name}: {len(header)} tensors, {len(weights & set(header))} of the {len(weights)} projection "
          f"weights, extra: {extra or 'none'}")
    assert file_kinds.identify(header) == "layerdiffuse-attn-dense"
    assert weights <= set(header)
