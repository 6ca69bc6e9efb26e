"""The tiny SDXL-shaped model: the offline default for tests and CI. Random weights: it paints noise.

It has what SDXL has (two CLIP text encoders whose hidden states are concatenated, pooled text
embeddings and added time ids, cross-attention down and up blocks, an 8x VAE) at a few million
parameters, so the whole path runs on a CPU in seconds.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch

TEXT_HIDDEN = 32
TEXT_PROJECTION = 32
TIME_EMBED = 8

UNET_CONFIG: dict[str, Any] = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64),
    layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2),
    # diffusers' SDXL config quirk: "attention_head_dim" holds the number of heads per block.
    attention_head_dim=(2, 4),
    use_linear_projection=True,
    cross_attention_dim=2 * TEXT_HIDDEN,
    addition_embed_type="text_time",
    addition_time_embed_dim=TIME_EMBED,
    projection_class_embeddings_input_dim=6 * TIME_EMBED + TEXT_PROJECTION,
)

VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(16, 16, 32, 32),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=128,
    scaling_factor=0.13025,
)

TEXT_CONFIG: dict[str, Any] = dict(
    vocab_size=0,  # set from the vocabulary
    hidden_size=TEXT_HIDDEN,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=TEXT_PROJECTION,
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=1,
)

SCHEDULER_CONFIG: dict[str, Any] = dict(
    _class_name="EulerDiscreteScheduler",
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    timestep_spacing="leading",
    steps_offset=1,
)


def tiny_vocabulary() -> dict[str, int]:
    """A byte-level BPE vocabulary without merges: every printable character, alone or word-final."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for code in range(33, 127):
        char = chr(code)
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    return vocab


def write_tokenizer(folder: Path, pad_token: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(tiny_vocabulary()))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "pad_token": pad_token,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "do_lower_case": True,
    }))


def build_components(seed: int = 0, unet_overrides: dict | None = None) -> dict:
    """Deterministic random SDXL-shaped components, in memory. ``unet_overrides`` widens the UNet
    (the benchmarks use a 30 M-parameter one)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    text_config = CLIPTextConfig(**{**TEXT_CONFIG, "vocab_size": len(tiny_vocabulary())})
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**{**UNET_CONFIG, **(unet_overrides or {})})
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**VAE_CONFIG)
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(text_config)
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModelWithProjection(text_config)
    tokenizer, tokenizer_2 = tiny_tokenizers()
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                tokenizer=tokenizer, tokenizer_2=tokenizer_2)


def tiny_tokenizers() -> tuple[Any, Any]:
    """SDXL's two CLIP tokenizers (padding with end-of-text, and with '!') on the tiny vocabulary: every
    id is below any CLIP vocabulary's size, so they also feed randomly initialised full-size encoders."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        write_tokenizer(Path(tmp, "t1"), "<|endoftext|>")
        write_tokenizer(Path(tmp, "t2"), "!")
        return CLIPTokenizer.from_pretrained(Path(tmp, "t1")), CLIPTokenizer.from_pretrained(Path(tmp, "t2"))


def attention_projections(unet: torch.nn.Module) -> list[str]:
    """Names of the Linears LayerDiffuse's transparent attention offsets: q, k, v, out of attn1/attn2."""
    names = []
    for name, _ in unet.named_modules():
        if name.endswith((".attn1", ".attn2")):
            names += [f"{name}.{p}" for p in ("to_q", "to_k", "to_v", "to_out.0")]
    return names


TRANSPARENT_RANK = 4


def build_transparent(unet: torch.nn.Module, seed: int = 0):
    """Random LayerDiffuse parts for the tiny UNet: rank-4 attention offsets on every projection
    LayerDiffuse touches, and the transparent decoder and encoder at tiny width.

    The zero-initialised convolutions (the decoder's latent input, the encoder's output) get random
    values here, so tests see the latent and the encoder actually matter."""
    from backend.models.lowrank import LowRankDelta
    from backend.models.transparent_vae import (
        TINY_DECODER_CHANNELS,
        TINY_ENCODER_CHANNELS,
        TransparentVAEDecoder,
        TransparentVAEEncoder,
    )

    generator = torch.Generator().manual_seed(seed + 4)
    modules = dict(unet.named_modules())
    factors = {}
    for name in attention_projections(unet):
        out_features, in_features = modules[name].weight.shape
        up = torch.randn(out_features, TRANSPARENT_RANK, generator=generator) * 0.1
        down = torch.randn(TRANSPARENT_RANK, in_features, generator=generator) * 0.1
        factors[name] = (up, down)
    torch.manual_seed(seed + 5)
    decoder = TransparentVAEDecoder(TINY_DECODER_CHANNELS)
    torch.nn.init.normal_(decoder.latent_conv_in.weight, std=0.1)
    encoder = TransparentVAEEncoder(TINY_ENCODER_CHANNELS)
    last: Any = encoder.blocks[-1]
    torch.nn.init.normal_(last.weight, std=0.01)
    return LowRankDelta(factors), decoder, encoder


def build_bundle(seed: int = 0, unet_overrides: dict | None = None):
    """The whole tiny model in memory (the loader writes it to disk and reads it back the real way)."""
    from backend.models.bundle import TINY, ModelBundle

    parts = build_components(seed, unet_overrides)
    delta, decoder, encoder = build_transparent(parts["unet"], seed)
    for module in (parts["unet"], parts["vae"], parts["text_encoder"], parts["text_encoder_2"], decoder, encoder):
        module.eval().requires_grad_(False)
    return ModelBundle(name="tiny", architecture=TINY, scheduler_config=dict(SCHEDULER_CONFIG),
                       transparent_attn=delta, transparent_decoder=decoder, transparent_encoder=encoder, **parts)
