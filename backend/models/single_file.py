"""SDXL from one checkpoint file (``.safetensors`` or a ``.ckpt`` pickle read with ``weights_only``) in
the original (A1111 / ComfyUI) key layout, offline.

The tensors are renamed with diffusers' own converters; the module shapes come from config files
on disk (shipped for SDXL in ``configs/sdxl``, written next to the tiny model for the tiny one), so
nothing is fetched from the hub. Modules are built on the meta device and take the file's tensors
by assignment: no random initialisation of 3.5 B parameters just to overwrite them.

A checkpoint without a baked-in VAE loads when a separate VAE file is given (``--vae``). Files of
other model families (the SDXL refiner, SD1.5, SD2) are named as such instead of "not SDXL".
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from backend.models import ldm_names
from backend.models.file_kinds import identify
from backend.models.weight_files import WeightFileError, check_names_and_shapes, load_tensors, read_header

SDXL_CONFIG_DIR = Path(__file__).with_name("configs") / "sdxl"
COMPONENT_PREFIXES = {
    "unet": ldm_names.UNET_PREFIX,
    "vae": ldm_names.VAE_PREFIX,
    "text_encoder": ldm_names.CLIP_L_PREFIX,
    "text_encoder_2": ldm_names.CLIP_G_PREFIX,
}
# Tensors some checkpoints carry that no diffusers module has (OpenCLIP's temperature, old buffers).
IGNORED_SUFFIXES = ("logit_scale", "position_ids", "model_ema.decay", "model_ema.num_updates")
# Known harmless extras, dropped before conversion. CLIP-L's projection: some merges save CLIP-L as
# CLIPTextModelWithProjection, but SDXL uses only CLIP-L's hidden states (the pooled embedding comes
# from CLIP-G), so the tensor is never used and CLIPTextModel has no place for it.
IGNORED_TENSORS = (ldm_names.CLIP_L_PREFIX + "text_projection.weight",
                   ldm_names.CLIP_L_PREFIX + "text_model.text_projection.weight")
# CLIP-G's projection as a Linear weight (ComfyUI writes it so): the transpose of OpenCLIP's parameter.
CLIP_G_PROJECTION = ldm_names.CLIP_G_PREFIX + "text_projection"
CLIP_G_PROJECTION_LINEAR = CLIP_G_PROJECTION + ".weight"
# The refiner's only text encoder (OpenCLIP-G) sits at embedder 0; SD1.5 / SD2 use cond_stage_model.
REFINER_CLIP_G_PREFIX = "conditioner.embedders.0.model."
SD15_CLIP_PREFIX = "cond_stage_model.transformer."
SD2_CLIP_PREFIX = "cond_stage_model.model."
REFINER_MESSAGE = ("this is the SDXL refiner; LayerDiffuse needs an SDXL base model (Pony, Illustrious, NoobAI "
                   "and other SDXL-base fine-tunes work)")
NO_VAE_MESSAGE = ("the checkpoint has no VAE baked in (no tensor starts with '{prefix}'); pass --vae FILE "
                  "(e.g. sdxl_vae.safetensors from ComfyUI's models/vae folder)")


def other_family(names: Mapping[str, Any] | set[str]) -> Optional[str]:
    """Why a checkpoint that is not SDXL base is refused, when its keys tell which model it is."""
    if not any(k.startswith(ldm_names.UNET_PREFIX) for k in names):
        return None
    if any(k.startswith(REFINER_CLIP_G_PREFIX) for k in names) and not any(
            k.startswith(ldm_names.CLIP_L_PREFIX) for k in names):
        return REFINER_MESSAGE
    if any(k.startswith(SD15_CLIP_PREFIX) for k in names):
        return "this is a Stable Diffusion 1.x checkpoint (SD1.5); LayerFusion needs an SDXL base model"
    if any(k.startswith(SD2_CLIP_PREFIX) for k in names):
        return "this is a Stable Diffusion 2.x checkpoint; LayerFusion needs an SDXL base model"
    return None


def require_sdxl(path: str | Path, names: Mapping[str, Any]) -> None:
    """Refuse anything but an original-layout SDXL checkpoint, naming the model family when known."""
    if ldm_names.is_original_sdxl(names):
        return
    reason = other_family(names) or (
        f"not an SDXL checkpoint in the original layout (no '{ldm_names.UNET_PREFIX}' and "
        f"'{ldm_names.CLIP_G_PREFIX}' tensors)")
    raise WeightFileError(f"{path}: {reason}")


def has_vae(names: Mapping[str, Any]) -> bool:
    return any(k.startswith(ldm_names.VAE_PREFIX) for k in names)


def describe_checkpoint(path: str | Path) -> dict[str, int]:
    """Tensor counts per component of an original-layout checkpoint (header only, no tensors read)."""
    header = read_header(path)
    counts = {name: sum(1 for k in header if k.startswith(prefix)) for name, prefix in COMPONENT_PREFIXES.items()}
    counts["other"] = len(header) - sum(counts.values())
    return counts


def read_config(config_dir: Path, component: str) -> dict[str, Any]:
    name = "scheduler_config.json" if component == "scheduler" else "config.json"
    path = Path(config_dir, component, name)
    if not path.is_file():
        raise FileNotFoundError(f"model config missing: {path}")
    return json.loads(path.read_text())


def _materialise(module: torch.nn.Module) -> torch.nn.Module:
    """Non-persistent buffers are not in any checkpoint; the only one these models have is CLIP's
    ``position_ids`` (an ``arange``), rebuilt here instead of being left on the meta device."""
    for name, buffer in list(module.named_buffers()):
        if not buffer.is_meta:
            continue
        if not name.endswith("position_ids"):
            raise RuntimeError(f"buffer '{name}' has no value after loading")
        owner = module.get_submodule(name.rsplit(".", 1)[0])
        owner.register_buffer("position_ids", torch.arange(buffer.shape[-1]).expand(buffer.shape), persistent=False)
    return module


def match_text_model_level(tensors: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Checkpoints name CLIP-L's tensors ``text_model.*``; transformers 5's CLIPTextModel dropped that
    level (CLIPTextModelWithProjection kept it). Follow whichever the module has. Names without the level
    are kept as they are, so an unknown extra tensor is reported under its own name."""
    if any(k.startswith("text_model.") for k in expected):
        return tensors
    return {k[len("text_model."):] if k.startswith("text_model.") else k: v for k, v in tensors.items()}


def _assign(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str, dtype: torch.dtype):
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    tensors = match_text_model_level(tensors, set(expected))
    check_names_and_shapes(expected, {k: tuple(v.shape) for k, v in tensors.items()}, source)
    # Cast the tensors, not the module: diffusers warns about casting whole models with ``to()``.
    tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    module.load_state_dict(tensors, strict=True, assign=True)
    return _materialise(module).eval()


def _clean(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the known harmless extras and give CLIP-G's projection the name the converter reads."""
    tensors = {k: v for k, v in tensors.items() if not k.endswith(IGNORED_SUFFIXES) and k not in IGNORED_TENSORS}
    if CLIP_G_PROJECTION_LINEAR in tensors and CLIP_G_PROJECTION not in tensors:
        # A Linear stores [out, in]; OpenCLIP's parameter is [in, out] (x @ P). The converter transposes
        # it back. SDXL's is square, so only the values (not the shape check) would catch a wrong way round.
        tensors[CLIP_G_PROJECTION] = tensors.pop(CLIP_G_PROJECTION_LINEAR).T
    return tensors


def convert(tensors: dict[str, torch.Tensor], config_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Original-layout tensors -> diffusers / transformers state dicts per component. ``vae`` is absent
    from the result when the checkpoint has no VAE tensors (it then needs a separate VAE file)."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    tensors = _clean(tensors)
    for component, prefix in COMPONENT_PREFIXES.items():
        if component != "vae" and not any(k.startswith(prefix) for k in tensors):
            raise WeightFileError(f"the checkpoint has no {component} (no tensor starts with '{prefix}')")
    parts = {
        "unet": convert_ldm_unet_checkpoint(tensors, read_config(config_dir, "unet")),
        "text_encoder": convert_ldm_clip_checkpoint(
            {k: v for k, v in tensors.items() if k.startswith(ldm_names.CLIP_L_PREFIX)}),
        "text_encoder_2": _convert_clip_g(tensors, read_config(config_dir, "text_encoder_2")),
    }
    if has_vae(tensors):
        parts["vae"] = convert_ldm_vae_checkpoint(
            {k: v for k, v in tensors.items() if k.startswith(ldm_names.VAE_PREFIX)}, read_config(config_dir, "vae"))
    return parts


def _convert_clip_g(tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

    class _Holder:  # the converter only reads ``hidden_size`` from the model's config
        pass

    holder: Any = _Holder()
    holder.config = type("Config", (), {"hidden_size": config["hidden_size"]})()
    part = {k: v for k, v in tensors.items() if k.startswith(ldm_names.CLIP_G_PREFIX)}
    return convert_open_clip_checkpoint(holder, part, prefix=ldm_names.CLIP_G_PREFIX)


def meta_modules(config_dir: Path) -> dict[str, torch.nn.Module]:
    """The four modules from their configs on the meta device: shapes without memory or init time."""
    return config_modules(config_dir, torch.device("meta"))


def config_modules(config_dir: Path, device: torch.device) -> dict[str, torch.nn.Module]:
    """The four modules from their configs, built on ``device``: randomly initialised there unless it is
    the meta device."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with device:
        return {
            "unet": UNet2DConditionModel.from_config(read_config(config_dir, "unet")),
            "vae": AutoencoderKL.from_config(read_config(config_dir, "vae")),
            "text_encoder": CLIPTextModel(CLIPTextConfig.from_dict(read_config(config_dir, "text_encoder"))),
            "text_encoder_2": CLIPTextModelWithProjection(
                CLIPTextConfig.from_dict(read_config(config_dir, "text_encoder_2"))),
        }


def build_models(parts: dict[str, dict[str, torch.Tensor]], config_dir: Path, dtype: torch.dtype,
                 source: str) -> dict[str, torch.nn.Module]:
    """Meta-device modules from the configs, filled strictly from ``parts`` (the components it has)."""
    modules = meta_modules(config_dir)
    return {name: _assign(module, parts[name], f"{source} [{name}]", dtype)
            for name, module in modules.items() if name in parts}


def validate_checkpoint(path: str | Path, config_dir: Path) -> bool:
    """Every tensor name and shape of an original-layout checkpoint against the modules, from the
    header alone (a 7 GB file is checked without reading it). Returns whether it has a VAE baked in."""
    header = read_header(path)
    require_sdxl(path, header)
    placeholders = {k: torch.empty(v.shape, device="meta") for k, v in header.items()}
    parts = convert(placeholders, config_dir)
    for name, module in meta_modules(config_dir).items():
        if name not in parts:
            continue
        expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        part = match_text_model_level(parts[name], set(expected))
        check_names_and_shapes(expected, {k: tuple(v.shape) for k, v in part.items()}, f"{path} [{name}]")
    return "vae" in parts


def load_single_file(path: str | Path, config_dir: Path, dtype: torch.dtype = torch.float32,
                     vae: Optional[str | Path] = None) -> dict[str, Any]:
    """UNet, VAE and both text encoders of an original-layout SDXL checkpoint (no tokenizers). With
    ``vae`` (a separate VAE file) that VAE replaces the baked-in one, which is then not even converted,
    and a checkpoint without one loads."""
    header = read_header(path)
    require_sdxl(path, header)
    if vae is None and not has_vae(header):
        raise WeightFileError(f"{path}: {NO_VAE_MESSAGE.format(prefix=ldm_names.VAE_PREFIX)}")
    tensors = load_tensors(path)
    if vae is not None:
        tensors = {k: v for k, v in tensors.items() if not k.startswith(ldm_names.VAE_PREFIX)}
    models = build_models(convert(tensors, config_dir), config_dir, dtype, str(path))
    if vae is not None:
        models["vae"] = load_vae_file(vae, read_config(config_dir, "vae"), dtype)
    return models


def load_vae_file(path: str | Path, vae_config: dict[str, Any], dtype: torch.dtype = torch.float32):
    """A separate VAE file (ComfyUI's ``vae/`` folder, or diffusers' fp16-fix VAE) in either layout,
    strictly, with the base model's VAE config."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    kind = identify(read_header(path))
    if kind not in ("vae-original", "diffusers-vae"):
        raise WeightFileError(f"{path}: not a VAE file")
    tensors = load_tensors(path)
    if kind == "vae-original":
        tensors = convert_ldm_vae_checkpoint(tensors, vae_config)
    with torch.device("meta"):
        module = AutoencoderKL.from_config(vae_config)
    return _assign(module, tensors, str(path), dtype)
