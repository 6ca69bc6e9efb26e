"""Where model files live: the presets, the Hugging Face cache, and a ComfyUI-style models folder.

``--models-dir`` may point at an existing ComfyUI ``models`` folder: SDXL checkpoints are looked for
in ``checkpoints/``, LayerDiffuse files in ``layer_model/`` (where ComfyUI-layerdiffuse and Forge keep
them) and VAEs in ``vae/``. Checkpoints may be ``.safetensors`` or ``.ckpt`` (read without running
pickled code, see weight_files). Nothing here downloads; it only looks.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from backend.models.file_kinds import FORMATS, identify
from backend.models.layerdiffuse import LayerDiffuseFiles, find_files
from backend.models.weight_files import WeightFileError, read_header


class ModelNotAvailable(RuntimeError):
    """The model cannot be had as asked: its files are not on this machine (and downloading was not
    allowed or not possible), or the device or dtype asked for is not here."""


# The published base checkpoint's file name (sd_xl_base_1.0.safetensors, …_0.9vae.safetensors).
SDXL_BASE_PREFIX = "sd_xl_base"
UNET_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
SDXL_REPO = "stabilityai/stable-diffusion-xl-base-1.0"
LD_ORIGINAL_REPO = "LayerDiffusion/layerdiffusion-v1"
CLIP_L_REPO = "openai/clip-vit-large-patch14"
LD_DIFFUSERS_REPO = "lllyasviel/LayerDiffuse_Diffusers"
# The revision the checksums below were published for (METHOD.md section 2.1).
LD_ORIGINAL_REVISION = "e337e9d7a0f2a6fee6c3580374327380f88d065b"
KNOWN_SHA256 = {
    "layer_xl_transparent_attn.safetensors": "b7919c5b4837fb64f24c97a7abdf1a9c6e8d60de080a5dae089dde098266df95",
    "vae_transparent_decoder.safetensors": "59dc8feefe40d26b6cb7186aed7af70c60d94ac4f9db8ebe7f121a01ba27a2fc",
}
LD_ORIGINAL_FILES = ("layer_xl_transparent_attn.safetensors", "vae_transparent_decoder.safetensors",
                     "vae_transparent_encoder.safetensors")
LD_DIFFUSERS_FILES = ("ld_diffusers_sdxl_attn.safetensors", "ld_diffusers_sdxl_vae_transparent_decoder.safetensors",
                      "ld_diffusers_sdxl_vae_transparent_encoder.safetensors")
# What CLIPTokenizer needs (looked for); the download also fetches special_tokens_map.json.
_TOKENIZER_FILES = ("merges.txt", "tokenizer_config.json", "vocab.json")
TOKENIZER_FILES = tuple(f"{folder}/{name}" for folder in ("tokenizer", "tokenizer_2") for name in _TOKENIZER_FILES)
TOKENIZER_DOWNLOADS = TOKENIZER_FILES + ("tokenizer/special_tokens_map.json", "tokenizer_2/special_tokens_map.json")
SDXL_FILES = (
    "model_index.json", "scheduler/scheduler_config.json",
    "text_encoder/config.json", "text_encoder/model.fp16.safetensors",
    "text_encoder_2/config.json", "text_encoder_2/model.fp16.safetensors",
    "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors",
    "vae/config.json", "vae/diffusion_pytorch_model.fp16.safetensors",
) + TOKENIZER_FILES
SDXL_DOWNLOADS = SDXL_FILES + TOKENIZER_DOWNLOADS[len(TOKENIZER_FILES):]

# Weight files looked for in a models folder; .ckpt pickles are loaded with torch.load(weights_only=True).
WEIGHT_PATTERNS = ("*.safetensors", "*.ckpt")

PRESETS = {
    "tiny": "SDXL-shaped random model, a few MB, written on first use; paints noise (tests, CI)",
    "sdxl": f"SDXL 1.0 base (checkpoints/{SDXL_BASE_PREFIX}*.safetensors in --models-dir, else {SDXL_REPO}) "
            "+ LayerDiffuse SDXL files; any other SDXL checkpoint: --model FILE",
}


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def cached_file(repo: str, filename: str) -> Optional[Path]:
    """A file of a hub repo if the Hugging Face cache holds it (any revision, newest ref first)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def cached_snapshot(repo: str, files: tuple[str, ...]) -> Optional[Path]:
    """The cache snapshot folder of ``repo`` if it holds all of ``files``."""
    paths = [cached_file(repo, f) for f in files]
    if any(p is None for p in paths):
        return None
    return Path(str(paths[0])[: -len(files[0])]).resolve() if paths else None


def tokenizer_folders(models_dir: Optional[Path] = None) -> Optional[tuple[Path, Optional[Path]]]:
    """Folders for SDXL's two CLIP tokenizers, the only non-weight files a single-file checkpoint needs
    that we do not ship (the vocabulary is OpenAI's). Both tokenizers share one vocabulary and differ in
    the pad token, so one CLIP tokenizer folder is enough (second entry None). Looked for in
    ``<models-dir>/sdxl_tokenizers/``, the HF cache of the SDXL repo, a ComfyUI install's own
    ``comfy/sd1_tokenizer`` (next to its models folder), and the HF cache of openai/clip-vit-large-patch14."""
    single = tuple(name for name in _TOKENIZER_FILES)
    if models_dir and all(Path(models_dir, "sdxl_tokenizers", f).is_file() for f in TOKENIZER_FILES):
        return Path(models_dir, "sdxl_tokenizers", "tokenizer"), Path(models_dir, "sdxl_tokenizers", "tokenizer_2")
    snapshot = cached_snapshot(SDXL_REPO, TOKENIZER_FILES)
    if snapshot:
        return Path(snapshot, "tokenizer"), Path(snapshot, "tokenizer_2")
    if models_dir:
        comfy = Path(models_dir).resolve().parent / "comfy" / "sd1_tokenizer"
        if all(Path(comfy, f).is_file() for f in single):
            return comfy, None
    clip = cached_snapshot(CLIP_L_REPO, single)
    return (Path(clip), None) if clip else None


def sdxl_in_cache() -> Optional[Path]:
    return cached_snapshot(SDXL_REPO, SDXL_FILES)


def sdxl_checkpoints(models_dir: Optional[Path]) -> list[Path]:
    """SDXL checkpoints in the original layout in ``<models-dir>/checkpoints``, base model names first."""
    if not models_dir or not Path(models_dir, "checkpoints").is_dir():
        return []
    found = []
    for path in _weight_files(Path(models_dir, "checkpoints")):
        try:
            header = read_header(path)
        except WeightFileError:
            continue
        # SDXL-sized, not just SDXL-shaped: the tiny model's checkpoint has the same layout.
        conv_in = header.get(UNET_CONV_IN)
        if identify(header) == "sdxl-original" and conv_in is not None and conv_in.shape[0] == 320:
            found.append(path)
    return sorted(found, key=lambda p: (not p.name.startswith(SDXL_BASE_PREFIX), p.name))


def _weight_files(folder: Path) -> list[Path]:
    return sorted(path for pattern in WEIGHT_PATTERNS for path in folder.rglob(pattern))


def sdxl_base_checkpoint(models_dir: Optional[Path]) -> Optional[Path]:
    """The published SDXL base checkpoint in ``<models-dir>/checkpoints`` (what the ``sdxl`` preset uses)."""
    base = [p for p in sdxl_checkpoints(models_dir) if p.name.startswith(SDXL_BASE_PREFIX)]
    return base[0] if base else None


def sdxl_base_available(models_dir: Optional[Path]) -> bool:
    """Whether the ``sdxl`` preset's base model is here: the HF cache, or the base checkpoint."""
    return sdxl_in_cache() is not None or sdxl_base_checkpoint(models_dir) is not None


def layerdiffuse_files(models_dir: Optional[Path]) -> Optional[LayerDiffuseFiles]:
    """The LayerDiffuse files: ``<models-dir>/layer_model`` first, then the HF cache (original repo,
    then the diffusers repo)."""
    if models_dir:
        local = find_files(Path(models_dir, "layer_model"))
        if local:
            return local
    for repo, names in ((LD_ORIGINAL_REPO, LD_ORIGINAL_FILES), (LD_DIFFUSERS_REPO, LD_DIFFUSERS_FILES)):
        attn, decoder, encoder = (cached_file(repo, n) for n in names)
        if attn and decoder:
            return LayerDiffuseFiles(attn, decoder, encoder)
    return None


@dataclass
class FoundFile:
    path: Path
    where: str  # "models-dir/checkpoints", "hf-cache", ...
    format: str
    size: int

    @property
    def description(self) -> str:
        return FORMATS.get(self.format, self.format)


def _describe(path: Path, where: str) -> FoundFile:
    try:
        kind = identify(read_header(path))
    except WeightFileError:
        kind = "invalid"
    return FoundFile(path, where, kind, path.stat().st_size)


def scan(models_dir: Optional[Path]) -> Iterator[FoundFile]:
    """Every weight file in the models folder's ComfyUI sub-folders and the relevant HF cache files."""
    if models_dir:
        for sub in ("checkpoints", "layer_model", "vae"):
            folder = Path(models_dir, sub)
            if folder.is_dir():
                for path in _weight_files(folder):
                    yield _describe(path, f"models-dir/{sub}")
    for repo, names in ((SDXL_REPO, SDXL_FILES), (LD_ORIGINAL_REPO, LD_ORIGINAL_FILES),
                        (LD_DIFFUSERS_REPO, LD_DIFFUSERS_FILES)):
        for name in names:
            if name.endswith(".safetensors"):
                cached = cached_file(repo, name)
                if cached:
                    yield _describe(cached, f"hf-cache {repo}")


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
