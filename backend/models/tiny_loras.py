"""LoRA files for the tiny model in each format artists' files come in, written with the real key names.

kohya-ss (``lora_unet_input_blocks_4_1_…`` from the original-layout module names, ``lora_te1_`` /
``lora_te2_`` for the text encoders, an ``alpha`` per layer), LyCORIS LoCon (kohya's names plus the
ResNet convolutions), the old diffusers layout (``unet.….processor.to_q_lora.down.weight``) and the
PEFT layout diffusers saves today (``unet.….lora_A.weight``). Tests and benchmarks load them through
exactly the code that loads a real file. ``write_distilled`` writes the step-distilled SDXL LoRAs
(SDXL-Lightning, Hyper-SD, DMD2, LCM-LoRA) under their published names, in their layout: kohya's
prefix on diffusers' module names, UNet only, the published dtype and metadata.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
from torch import nn

from backend.models import ldm_names
from backend.models.weight_files import save_tensors

FORMATS = ("kohya", "lycoris", "diffusers", "peft")
KOHYA_METADATA = {"ss_base_model_version": "sdxl_base_v1-0", "ss_network_module": "networks.lora"}
LOCON_METADATA = {"ss_base_model_version": "sdxl_base_v1-0", "ss_network_module": "lycoris.kohya",
                  "ss_network_args": '{"algo": "locon"}'}
# The old diffusers attention-processor names of the four attention projections.
_OLD_DIFFUSERS = {"to_q": "to_q_lora", "to_k": "to_k_lora", "to_v": "to_v_lora", "to_out.0": "to_out_lora"}
_ATTENTION_PROJECTION = re.compile(r"(.*\.attn[12])\.(to_q|to_k|to_v|to_out\.0)$")
_TEXT_LAYERS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2")


def _transformer_linears(unet: nn.Module) -> Iterator[tuple[str, nn.Linear]]:
    """What kohya's default network targets: every Linear inside the UNet's transformer stacks."""
    for name, module in unet.named_modules():
        if isinstance(module, nn.Linear) and ".attentions." in name:
            yield name, module


def _resnet_convs(unet: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """What a LoCon adds: the ResNets' convolutions and time projections, down- and upsamplers."""
    for name, module in unet.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and (".resnets." in name or "samplers." in name):
            yield name, module


def _text_linears(encoder: nn.Module) -> Iterator[tuple[str, nn.Linear]]:
    for name, module in encoder.named_modules():
        if isinstance(module, nn.Linear) and name.endswith(_TEXT_LAYERS):
            yield name, module


def _factors(module: nn.Module, rank: int, generator: torch.Generator, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(down, up) for one layer: [r, in] and [out, r] for a Linear, [r, in, kh, kw] and [out, r, 1, 1]
    for a convolution, as kohya and LyCORIS store them."""
    weight: torch.Tensor = module.weight  # type: ignore[assignment]  # nn.Module types attributes loosely
    shape = [int(size) for size in weight.shape]
    down_shape = [rank, *shape[1:]]
    up_shape = [shape[0], rank] + ([1, 1] if len(shape) == 4 else [])
    return (torch.randn(down_shape, generator=generator) * scale,
            torch.randn(up_shape, generator=generator) * scale)


def write_lora(path: Path, fmt: str, components: dict, *, rank: int = 4, alpha: Optional[float] = 2.0,
               seed: int = 0, scale: float = 0.2, text_encoders: bool = True,
               metadata: Optional[dict[str, str]] = None, unet_names: str = "ldm",
               dtype: torch.dtype = torch.float32) -> Path:
    """A LoRA for ``components`` (tiny.build_components or a bundle's modules) in format ``fmt``.

    kohya and LyCORIS files name UNet layers by the original layout (``unet_names="ldm"``) or, as files
    converted from a PEFT training run do, by diffusers' module paths (``"diffusers"``:
    ``lora_unet_down_blocks_1_attentions_0_proj_in``). ``metadata={}`` writes no metadata at all."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    if unet_names not in ("ldm", "diffusers"):
        raise ValueError("unet_names must be ldm or diffusers")
    generator = torch.Generator().manual_seed(seed)
    unet = components["unet"]
    tensors: dict[str, torch.Tensor] = {}
    name_for: Callable[[str, str], tuple[str, str, str]]
    if fmt in ("kohya", "lycoris"):
        def name_for(part: str, module: str) -> tuple[str, str, str]:
            ldm = part == "unet" and unet_names == "ldm"
            stem = ldm_names.ldm_module_name(module, unet.config) if ldm else module
            base = {"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}[part]
            key = base + stem.replace(".", "_")
            return f"{key}.lora_down.weight", f"{key}.lora_up.weight", f"{key}.alpha"
    elif fmt == "diffusers":
        def name_for(part: str, module: str) -> tuple[str, str, str]:
            attention = _ATTENTION_PROJECTION.match(module)
            if part != "unet":
                key = f"{part}.{module}.lora_linear_layer"
            elif attention:
                key = f"unet.{attention[1]}.processor.{_OLD_DIFFUSERS[attention[2]]}"
            else:
                key = f"unet.{module}.lora"
            return f"{key}.down.weight", f"{key}.up.weight", ""
    else:
        def name_for(part: str, module: str) -> tuple[str, str, str]:
            return f"{part}.{module}.lora_A.weight", f"{part}.{module}.lora_B.weight", ""

    layers: list[tuple[str, str, nn.Module]] = [("unet", n, m) for n, m in _transformer_linears(unet)]
    if fmt == "lycoris":
        layers += [("unet", n, m) for n, m in _resnet_convs(unet)]
    if text_encoders:
        for part in ("text_encoder", "text_encoder_2"):
            layers += [(part, n, m) for n, m in _text_linears(components[part])]
    for part, module_name, module in layers:
        down_key, up_key, alpha_key = name_for(part, module_name)
        down, up = _factors(module, rank, generator, scale)
        tensors[down_key], tensors[up_key] = down.to(dtype), up.to(dtype)
        if alpha is not None and alpha_key:
            tensors[alpha_key] = torch.tensor(float(alpha), dtype=dtype)
    default_meta = {"kohya": KOHYA_METADATA, "lycoris": LOCON_METADATA}.get(fmt, {})
    save_tensors(tensors, path, metadata=(metadata if metadata is not None else dict(default_meta)) or None)
    return path


@dataclass(frozen=True)
class DistilledFile:
    """How a published step-distilled SDXL LoRA is laid out: all four are PEFT training runs converted
    to kohya's prefix with diffusers' module names (``lora_unet_down_blocks_0_resnets_0_conv1``), on the
    targets of diffusers' LCM-LoRA script (attention, feed-forward, ``proj_in/out``, the ResNets'
    convolutions and time projections, down- and upsamplers), UNet only, an ``alpha`` per layer."""
    family: str
    name: str  # the published file name; its path under a LoRA folder
    dtype: torch.dtype
    alpha: Optional[float]  # None: alpha = rank, as the training script's default
    metadata: dict[str, str]


# DMD2's extract_lora_module.py: rank 64, alpha 8, save_file without metadata, fp32 or --fp16.
# diffusers' LCM-LoRA script saves through save_lora_weights ({"format": "pt"}) at the training dtype.
# SDXL-Lightning and Hyper-SD published no conversion code: their layout here is the same one (their
# sizes fit rank 64 on these targets), not read from the files themselves; the alpha values are a guess.
DISTILLED = (
    DistilledFile("lightning", "sdxl_lightning_4step_lora.safetensors", torch.float16, None, {}),
    DistilledFile("hyper", "Hyper-SDXL-4steps-lora.safetensors", torch.float16, None, {}),
    DistilledFile("hyper", "Hyper-SDXL-8steps-CFG-lora.safetensors", torch.float16, None, {}),
    DistilledFile("dmd2", "dmd2_sdxl_4step_lora.safetensors", torch.float32, 8.0, {}),
    DistilledFile("dmd2", "dmd2_sdxl_4step_lora_fp16.safetensors", torch.float16, 8.0, {}),
    DistilledFile("lcm", "lcm-lora-sdxl/pytorch_lora_weights.safetensors", torch.float16, None, {"format": "pt"}),
)


def write_distilled(folder: Path, components: dict, *, rank: int = 4, seed: int = 0) -> dict[str, Path]:
    """Each file of DISTILLED under ``folder`` for ``components``, by published name."""
    return {spec.name: write_lora(Path(folder) / spec.name, "lycoris", components, rank=rank,
                                  alpha=spec.alpha if spec.alpha is not None else float(rank),
                                  seed=seed + index, text_encoders=False, metadata=spec.metadata,
                                  unet_names="diffusers", dtype=spec.dtype)
            for index, spec in enumerate(DISTILLED)}
