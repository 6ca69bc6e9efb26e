"""``models check``: what a weight file is, and whether it fits the SDXL (or tiny) modules exactly.

Checks read only the safetensors header (a ``.ckpt`` is memory-mapped, its tensors left unread) and
compare against modules built on the meta device, so the full-size check of a 7 GB checkpoint or a
743 MB LoRA takes a second and no memory. Checkpoints of other model families (SDXL refiner, SD1.5,
SD2) are named as such.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from backend.models import file_kinds, layerdiffuse, single_file
from backend.models.transparent_vae import channels_for
from backend.models.weight_files import WeightFileError, check_names_and_shapes, read_header

MODELS = ("sdxl", "tiny")


@dataclass
class CheckResult:
    path: Path
    format: str
    tensors: int
    parameters: int
    model: Optional[str]  # which model's modules it fits; None when it is not a file we load
    note: str = ""

    @property
    def description(self) -> str:
        return file_kinds.FORMATS.get(self.format, self.format)


def config_dir(model: str) -> Path:
    if model == "tiny":
        from backend.models.tiny_files import ensure_tiny_files

        return ensure_tiny_files().configs
    return single_file.SDXL_CONFIG_DIR


def meta_unet(model: str) -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    from backend.models import tiny

    config = dict(tiny.UNET_CONFIG) if model == "tiny" else single_file.read_config(config_dir(model), "unet")
    with torch.device("meta"):
        return UNet2DConditionModel.from_config(config)


def check_for(path: Path, kind: str, model: str) -> str:
    """Raise WeightFileError unless ``path`` (of format ``kind``) fits ``model``; returns a note."""
    if kind in ("layerdiffuse-attn-lora", "layerdiffuse-attn-dense"):
        _, pairs = layerdiffuse.validate_attention(path, meta_unet(model))
        count = len(pairs) if pairs else len(read_header(path))
        return f"{count} attention projections mapped onto the {model} UNet"
    if kind == "layerdiffuse-decoder":
        layerdiffuse.validate_module_file(path, layerdiffuse.decoder_module(channels_for(model == "tiny")[0]))
        return "loads strictly into the transparent decoder"
    if kind == "layerdiffuse-encoder":
        layerdiffuse.validate_module_file(path, layerdiffuse.encoder_module(channels_for(model == "tiny")[1]))
        try:
            scale = layerdiffuse.encoder_scale_for(path)
            return f"loads strictly into the transparent encoder; output scale {scale:g} (from its layout)"
        except WeightFileError as err:
            return f"loads strictly into the transparent encoder; {err}"
    if kind in ("vae-original", "diffusers-vae"):
        from diffusers import AutoencoderKL
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

        config = single_file.read_config(config_dir(model), "vae")
        names = {k: torch.empty(v.shape, device="meta") for k, v in read_header(path).items()}
        if kind == "vae-original":
            names = convert_ldm_vae_checkpoint(names, config)
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in AutoencoderKL.from_config(config).state_dict().items()}
        check_names_and_shapes(expected, {k: tuple(v.shape) for k, v in names.items()}, str(path))
        return "fits the VAE (use it with --vae)"
    if kind == "sdxl-original":
        if single_file.validate_checkpoint(path, config_dir(model)):
            return "UNet, VAE and both text encoders convert and fit"
        return "UNet and both text encoders convert and fit; no VAE baked in: load it with --vae FILE"
    family = single_file.other_family(read_header(path))
    if family:
        raise WeightFileError(f"{path}: {family}")
    raise WeightFileError(f"{path}: {file_kinds.FORMATS.get(kind, kind)}; LayerFusion does not load it")


def check_file(path: str | Path, model: str = "auto") -> CheckResult:
    """The file's format and the model it fits; raises WeightFileError naming the first mismatch."""
    path = Path(path)
    header = read_header(path)
    kind = file_kinds.identify(header)
    total = sum(info.numel for info in header.values())
    candidates = MODELS if model == "auto" else (model,)
    first_error: Optional[WeightFileError] = None
    for candidate in candidates:
        try:
            note = check_for(path, kind, candidate)
            return CheckResult(path, kind, len(header), total, candidate, note)
        except WeightFileError as err:
            first_error = first_error or err
    assert first_error is not None
    raise first_error
