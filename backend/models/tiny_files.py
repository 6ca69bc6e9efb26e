"""The tiny model written to disk in the real formats, so it loads through the production loader.

Layout (a ComfyUI-style models folder, so ``--models-dir`` scanning sees it too)::

    <root>/tiny-v<N>/VERSION
    <root>/tiny-v<N>/checkpoints/tiny_sdxl.safetensors           original A1111 key layout
    <root>/tiny-v<N>/configs/{unet,vae,text_encoder,text_encoder_2,scheduler,tokenizer,tokenizer_2}/
    <root>/tiny-v<N>/layer_model/layer_xl_transparent_attn.safetensors   original LoRA layout
    <root>/tiny-v<N>/layer_model/vae_transparent_{decoder,encoder}.safetensors

``<root>`` is ``$LAYERFUSION_CACHE``, else ``<HF cache>/layerfusion``. Written once per version (seeded,
deterministic) into a temporary folder that is renamed into place, so concurrent writers cannot leave
half a model behind.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from backend.models import ldm_names, tiny
from backend.models.layerdiffuse import ATTN_ORIGINAL, DECODER_FILES
from backend.models.weight_files import save_tensors

# Bump when anything written here changes: old folders are then ignored, never reused.
TINY_FILES_VERSION = 4
TINY_SEED = 0
CHECKPOINT_NAME = "tiny_sdxl.safetensors"
ENCODER_NAME = "vae_transparent_encoder.safetensors"


@dataclass(frozen=True)
class TinyFiles:
    root: Path

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoints" / CHECKPOINT_NAME

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    @property
    def layer_model(self) -> Path:
        return self.root / "layer_model"


def cache_root() -> Path:
    configured = os.environ.get("LAYERFUSION_CACHE")
    if configured:
        return Path(configured)
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / "layerfusion"


def _stamp() -> str:
    return json.dumps({"version": TINY_FILES_VERSION, "seed": TINY_SEED}, sort_keys=True)


def ensure_tiny_files(root: Path | None = None) -> TinyFiles:
    """The tiny model's files, written now if absent or stale."""
    target = Path(root or cache_root()) / f"tiny-v{TINY_FILES_VERSION}"
    stamp = target / "VERSION"
    if stamp.is_file() and stamp.read_text() == _stamp():
        return TinyFiles(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    try:
        write_tiny_model(work)
        (work / "VERSION").write_text(_stamp())
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            work.rename(target)
        except OSError:
            if not (stamp.is_file() and stamp.read_text() == _stamp()):
                raise  # someone else won the race only if their copy is complete
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return TinyFiles(target)


def write_tiny_model(folder: Path, seed: int = TINY_SEED) -> None:
    files = TinyFiles(folder)
    components = tiny.build_components(seed)
    _write_configs(files.configs, components)
    unet, vae = components["unet"], components["vae"]
    checkpoint: dict[str, torch.Tensor] = {}
    checkpoint.update(ldm_names.unet_to_ldm(unet.state_dict(), dict(unet.config)))
    checkpoint.update(ldm_names.vae_to_ldm(vae.state_dict(), dict(vae.config)))
    checkpoint.update(ldm_names.clip_l_to_ldm(components["text_encoder"].state_dict()))
    checkpoint.update(ldm_names.clip_g_to_ldm(components["text_encoder_2"].state_dict()))
    save_tensors({k: v.detach().clone() for k, v in checkpoint.items()}, files.checkpoint,
                 metadata={"format": "pt"})  # one key: safetensors orders metadata at random
    # The same seeded parts as ``tiny.build_bundle``: on disk and in memory the tiny model is one model.
    delta, decoder, encoder = tiny.build_transparent(unet, seed)
    save_tensors(lora_layout(delta, unet), files.layer_model / ATTN_ORIGINAL)
    save_tensors(decoder.state_dict(), files.layer_model / DECODER_FILES[0])
    save_tensors(encoder.state_dict(), files.layer_model / ENCODER_NAME)


def _write_configs(folder: Path, components: dict) -> None:
    for name in ("unet", "vae"):
        components[name].save_config(folder / name)
    for name in ("text_encoder", "text_encoder_2"):
        (folder / name).mkdir(parents=True, exist_ok=True)
        config = components[name].config.to_dict()
        config["architectures"] = [type(components[name]).__name__]
        (folder / name / "config.json").write_text(json.dumps(config, indent=1, default=str))
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(tiny.SCHEDULER_CONFIG, indent=1))
    components["tokenizer"].save_pretrained(folder / "tokenizer")
    components["tokenizer_2"].save_pretrained(folder / "tokenizer_2")


def lora_layout(delta, unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Low-rank offsets keyed exactly like the published ``layer_xl_transparent_attn`` file
    (``diffusion_model.<ldm path>.<proj>.weight::lora::0/1``), with the ldm paths of ``unet``'s config."""
    config: Any = unet.config  # diffusers' FrozenDict, typed as Tensor | Module by nn.Module
    to_ldm = {new: old for old, new in ldm_names.attention_block_map(dict(config)).items()}
    out: dict[str, torch.Tensor] = {}
    for name, (up, down) in delta.factors.items():
        prefix = next(p for p in to_ldm if name.startswith(p + "."))
        key = f"diffusion_model.{to_ldm[prefix]}{name[len(prefix):]}.weight"
        out[key + "::lora::0"] = up.detach().clone()
        out[key + "::lora::1"] = down.detach().clone()
    return out
