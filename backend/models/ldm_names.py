"""Parameter names of the original (ldm / A1111 / ComfyUI) layout, derived from a diffusers config.

Reading an original checkpoint uses diffusers' own converters; this module holds the rules in the
other direction (needed to write the tiny model in the real layout) and the block mapping the
LayerDiffuse LoRA keys need. Both follow diffusers' rule: in a UNet with ``n = layers_per_block``,
down block ``b`` slot ``j`` is ldm ``input_blocks.{1 + b (n + 1) + j}``, its downsampler
``input_blocks.{(b + 1)(n + 1)}.0.op``; up block ``b`` slot ``j`` is ``output_blocks.{b (n + 1) + j}``.
Deriving it from the config (not a hard-coded SDXL table) is what lets the tiny UNet use it too.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
CLIP_G_PREFIX = "conditioner.embedders.1.model."

# diffusers ResnetBlock2D names -> ldm ResBlock names
_UNET_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
                ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection"))
_UNET_FIXED = {
    "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
}


def is_original_sdxl(names: Mapping[str, Any] | set[str]) -> bool:
    """An SDXL checkpoint in the original layout has a UNet and the second (OpenCLIP) text encoder."""
    return any(k.startswith(UNET_PREFIX) for k in names) and any(
        k.startswith(CLIP_G_PREFIX) for k in names)


def _layers(config: Mapping[str, Any]) -> int:
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        raise ValueError("per-block layers_per_block is not an SDXL-style UNet")
    return layers


def attention_block_map(config: Mapping[str, Any]) -> dict[str, str]:
    """ldm prefix -> diffusers prefix for every transformer stack of the UNet, e.g. for SDXL
    ``input_blocks.4.1`` -> ``down_blocks.1.attentions.0`` and ``output_blocks.3.1`` -> ``up_blocks.1.attentions.0``."""
    n = _layers(config)
    mapping: dict[str, str] = {}
    for b, kind in enumerate(config["down_block_types"]):
        if "CrossAttn" in kind:
            for j in range(n):
                mapping[f"input_blocks.{1 + b * (n + 1) + j}.1"] = f"down_blocks.{b}.attentions.{j}"
    if "CrossAttn" in (config.get("mid_block_type") or "UNetMidBlock2DCrossAttn"):
        mapping["middle_block.1"] = "mid_block.attentions.0"
    for b, kind in enumerate(config["up_block_types"]):
        if "CrossAttn" in kind:
            for j in range(n + 1):
                mapping[f"output_blocks.{b * (n + 1) + j}.1"] = f"up_blocks.{b}.attentions.{j}"
    return mapping


def _unet_prefixes(config: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(diffusers prefix, ldm prefix, is_resnet) for every sub-module of the UNet."""
    n = _layers(config)
    rules = [(d, ldm, False) for d, ldm in _UNET_FIXED.items()]
    rules += [(d, ldm, False) for ldm, d in attention_block_map(config).items()]
    down, up = config["down_block_types"], config["up_block_types"]
    for b in range(len(down)):
        for j in range(n):
            rules.append((f"down_blocks.{b}.resnets.{j}", f"input_blocks.{1 + b * (n + 1) + j}.0", True))
        if b < len(down) - 1:
            rules.append((f"down_blocks.{b}.downsamplers.0.conv", f"input_blocks.{(b + 1) * (n + 1)}.0.op", False))
    rules += [("mid_block.resnets.0", "middle_block.0", True), ("mid_block.resnets.1", "middle_block.2", True)]
    for b, kind in enumerate(up):
        for j in range(n + 1):
            rules.append((f"up_blocks.{b}.resnets.{j}", f"output_blocks.{b * (n + 1) + j}.0", True))
        if b < len(up) - 1:
            slot = 2 if "CrossAttn" in kind else 1
            rules.append((f"up_blocks.{b}.upsamplers.0.conv", f"output_blocks.{b * (n + 1) + n}.{slot}.conv", False))
    return rules


def _rename(key: str, rules: list[tuple[str, str, bool]], inner: tuple[tuple[str, str], ...]) -> str:
    for new_prefix, old_prefix, renames_inner in rules:
        if key.startswith(new_prefix + "."):
            rest = key[len(new_prefix) + 1:]
            if renames_inner:
                for d, ldm in inner:
                    if rest.startswith(d + "."):
                        rest = ldm + rest[len(d):]
                        break
            return f"{old_prefix}.{rest}"
    raise KeyError(f"no original-layout name for '{key}'")


def ldm_module_name(name: str, config: Mapping[str, Any]) -> str:
    """The original-layout name of one UNet sub-module (``down_blocks.1.resnets.0.conv1`` ->
    ``input_blocks.4.0.in_layers.2``), as kohya's SDXL LoRA names are built from."""
    return _rename(name + ".weight", _unet_prefixes(config), _UNET_RESNET).removesuffix(".weight")


def unet_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A diffusers UNet state dict under the original names, prefixed ``model.diffusion_model.``."""
    rules = _unet_prefixes(config)
    return {UNET_PREFIX + _rename(k, rules, _UNET_RESNET): v for k, v in state_dict.items()}


def vae_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKL state dict under the original names (``first_stage_model.``)."""
    count = len(config["up_block_types"])
    rules: list[tuple[str, str, bool]] = []
    for side in ("encoder", "decoder"):
        rules += [(f"{side}.conv_norm_out", f"{side}.norm_out", False),
                  (f"{side}.mid_block.resnets.0", f"{side}.mid.block_1", True),
                  (f"{side}.mid_block.resnets.1", f"{side}.mid.block_2", True)]
    for i in range(len(config["down_block_types"])):
        rules += [(f"encoder.down_blocks.{i}.resnets", f"encoder.down.{i}.block", True),
                  (f"encoder.down_blocks.{i}.downsamplers.0.conv", f"encoder.down.{i}.downsample.conv", False)]
    for i in range(count):
        # the original decoder counts its up blocks from the lowest resolution's opposite end
        rules += [(f"decoder.up_blocks.{i}.resnets", f"decoder.up.{count - 1 - i}.block", True),
                  (f"decoder.up_blocks.{i}.upsamplers.0.conv", f"decoder.up.{count - 1 - i}.upsample.conv", False)]
    attention = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        attn = next((s for s in ("encoder", "decoder") if key.startswith(f"{s}.mid_block.attentions.0.")), None)
        if attn:
            rest = key[len(f"{attn}.mid_block.attentions.0."):]
            for d, ldm in attention:
                if rest.startswith(d + "."):
                    rest = ldm + rest[len(d):]
            if value.ndim == 2:  # the original attention uses 1x1 convolutions
                value = value[:, :, None, None]
            out[f"{VAE_PREFIX}{attn}.mid.attn_1.{rest}"] = value
            continue
        try:
            name = _rename(key, rules, ()).replace("conv_shortcut", "nin_shortcut")
        except KeyError:
            name = key  # conv_in, conv_out, quant_conv, post_quant_conv keep their names
        out[VAE_PREFIX + name] = value
    return out


def clip_l_to_ldm(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIP ViT-L keeps the transformers names in the original layout, under a prefix, with the
    ``text_model.`` level that transformers 5's CLIPTextModel no longer has."""
    return {CLIP_L_PREFIX + (k if k.startswith("text_model.") else "text_model." + k): v
            for k, v in state_dict.items() if not k.endswith("position_ids")}


def clip_g_to_ldm(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIP bigG (transformers CLIPTextModelWithProjection) in OpenCLIP's names: fused q/k/v
    ``in_proj`` tensors, ``resblocks``, and a transposed ``text_projection``."""
    out: dict[str, torch.Tensor] = {}
    fixed = {"text_model.embeddings.token_embedding.weight": "token_embedding.weight",
             "text_model.embeddings.position_embedding.weight": "positional_embedding",
             "text_model.final_layer_norm.weight": "ln_final.weight",
             "text_model.final_layer_norm.bias": "ln_final.bias"}
    layer_names = (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"),
                   ("mlp.fc2", "mlp.c_proj"), ("self_attn.out_proj", "attn.out_proj"))
    for key, value in state_dict.items():
        if key in fixed:
            out[CLIP_G_PREFIX + fixed[key]] = value
        elif key == "text_projection.weight":
            out[CLIP_G_PREFIX + "text_projection"] = value.T.contiguous()
        elif key.startswith("text_model.encoder.layers."):
            index, rest = key[len("text_model.encoder.layers."):].split(".", 1)
            base = f"{CLIP_G_PREFIX}transformer.resblocks.{index}."
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                continue  # fused below
            for d, ldm in layer_names:
                if rest.startswith(d + "."):
                    rest = ldm + rest[len(d):]
                    break
            out[base + rest] = value
    layers = {k.split(".")[3] for k in state_dict if k.startswith("text_model.encoder.layers.")}
    for index in layers:
        src = f"text_model.encoder.layers.{index}.self_attn."
        for kind in ("weight", "bias"):
            out[f"{CLIP_G_PREFIX}transformer.resblocks.{index}.attn.in_proj_{kind}"] = torch.cat(
                [state_dict[f"{src}{p}_proj.{kind}"] for p in ("q", "k", "v")])
    return out
