"""The original-layout names, checked against diffusers' own modules and its own converters.

A wrong block mapping loads silently (the shapes match), so the LayerDiffuse mapping is checked against
METHOD.md's table, against the SDXL UNet's real module names, and in a round trip through diffusers.
"""
from __future__ import annotations

import torch
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)
from diffusers.models.transformers.transformer_2d import Transformer2DModel

from backend.models import ldm_names, tiny
from backend.models.tiny import attention_projections

# METHOD.md section 2.2.2 (diffusers' standard rule; jnkl314's swapped 7.1/8.1 would fail this).
SDXL_TABLE = {
    "input_blocks.4.1": "down_blocks.1.attentions.0", "input_blocks.5.1": "down_blocks.1.attentions.1",
    "input_blocks.7.1": "down_blocks.2.attentions.0", "input_blocks.8.1": "down_blocks.2.attentions.1",
    "middle_block.1": "mid_block.attentions.0",
    "output_blocks.0.1": "up_blocks.0.attentions.0", "output_blocks.1.1": "up_blocks.0.attentions.1",
    "output_blocks.2.1": "up_blocks.0.attentions.2", "output_blocks.3.1": "up_blocks.1.attentions.0",
    "output_blocks.4.1": "up_blocks.1.attentions.1", "output_blocks.5.1": "up_blocks.1.attentions.2",
}
# Transformer blocks per stack in SDXL: 2 in the 640-channel stacks, 10 in the 1280-channel ones.
SDXL_DEPTH = {"down_blocks.1": 2, "down_blocks.2": 10, "mid_block": 10, "up_blocks.0": 10, "up_blocks.1": 2}


def test_sdxl_attention_mapping_matches_the_table_and_the_unet(sdxl_meta):
    unet = sdxl_meta["unet"]
    mapping = ldm_names.attention_block_map(dict(unet.config))
    assert mapping == SDXL_TABLE
    modules = dict(unet.named_modules())
    for ldm, name in mapping.items():
        stack = modules[name]
        assert isinstance(stack, Transformer2DModel)
        assert len(stack.transformer_blocks) == SDXL_DEPTH[name.rsplit(".attentions", 1)[0]], ldm
    projections = attention_projections(unet)
    assert len(projections) == 560  # 70 transformer blocks x (attn1, attn2) x (q, k, v, out)
    assert sum(modules[p].weight.numel() for p in projections) == 955_187_200  # METHOD.md 2.2.3
    mapped = {p for p in projections if any(p.startswith(d + ".") for d in mapping.values())}
    assert mapped == set(projections)


def test_sdxl_unet_names_round_trip_through_diffusers(sdxl_meta):
    unet = sdxl_meta["unet"]
    state = unet.state_dict()
    ldm = ldm_names.unet_to_ldm(state, dict(unet.config))
    assert "model.diffusion_model.input_blocks.7.1.transformer_blocks.9.attn2.to_k.weight" in ldm
    assert ldm["model.diffusion_model.input_blocks.7.1.transformer_blocks.9.attn2.to_k.weight"].shape == (1280, 2048)
    assert "model.diffusion_model.output_blocks.2.2.conv.weight" in ldm  # upsampler after an attention
    assert "model.diffusion_model.label_emb.0.0.weight" in ldm
    back = convert_ldm_unet_checkpoint(ldm, dict(unet.config))
    assert set(back) == set(state)
    assert all(back[k].shape == state[k].shape for k in state)


def test_sdxl_vae_and_text_encoder_names_round_trip(sdxl_meta):
    vae = sdxl_meta["vae"]
    state = vae.state_dict()
    ldm = ldm_names.vae_to_ldm(state, dict(vae.config))
    assert ldm["first_stage_model.decoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
    assert "first_stage_model.decoder.up.3.block.0.conv1.weight" in ldm
    back = convert_ldm_vae_checkpoint(ldm, dict(vae.config))
    assert set(back) == set(state) and all(back[k].shape == state[k].shape for k in state)

    clip_l = sdxl_meta["text_encoder"].state_dict()
    ldm = ldm_names.clip_l_to_ldm(clip_l)
    assert ldm["conditioner.embedders.0.transformer.text_model.encoder.layers.11.mlp.fc2.weight"].shape == (768, 3072)
    back = convert_ldm_clip_checkpoint(ldm)
    assert all(k.startswith("text_model.") for k in back)
    assert {k[len("text_model."):] if k[len("text_model."):] in clip_l else k for k in back} == set(clip_l)

    text_2 = sdxl_meta["text_encoder_2"]
    clip_g = text_2.state_dict()
    ldm = ldm_names.clip_g_to_ldm(clip_g)
    assert ldm["conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight"].shape == (3840, 1280)
    assert ldm["conditioner.embedders.1.model.positional_embedding"].shape == (77, 1280)
    back = convert_open_clip_checkpoint(text_2, ldm, prefix=ldm_names.CLIP_G_PREFIX)
    assert set(back) == set(clip_g) and all(back[k].shape == clip_g[k].shape for k in clip_g)


def test_clip_g_values_survive_the_fused_qkv(tiny_files):
    components = tiny.build_components(3)
    state = components["text_encoder_2"].state_dict()
    back = convert_open_clip_checkpoint(components["text_encoder_2"], ldm_names.clip_g_to_ldm(state),
                                        prefix=ldm_names.CLIP_G_PREFIX)
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_tiny_mapping_is_derived_from_its_own_config():
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**tiny.UNET_CONFIG)
    mapping = ldm_names.attention_block_map(dict(unet.config))
    # tiny: DownBlock2D then CrossAttnDownBlock2D; CrossAttnUpBlock2D then UpBlock2D.
    assert mapping == {"input_blocks.4.1": "down_blocks.1.attentions.0",
                       "input_blocks.5.1": "down_blocks.1.attentions.1",
                       "middle_block.1": "mid_block.attentions.0",
                       "output_blocks.0.1": "up_blocks.0.attentions.0",
                       "output_blocks.1.1": "up_blocks.0.attentions.1",
                       "output_blocks.2.1": "up_blocks.0.attentions.2"}
    modules = dict(unet.named_modules())
    assert all(isinstance(modules[name], Transformer2DModel) for name in mapping.values())
