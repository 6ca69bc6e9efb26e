"""LayerDiffuse's SDXL files in both published layouts (METHOD.md section 2), read strictly.

* transparent attention, original (ComfyUI / Forge) layout ``layer_xl_transparent_attn.safetensors``:
  ``diffusion_model.<ldm path>.<proj>.weight::lora::<i>``, ``i = 0`` up [out, r], ``i = 1`` down [r, in];
* transparent attention, diffusers layout ``ld_diffusers_sdxl_attn.safetensors``: dense offsets under the
  diffusers UNet's own parameter names, factorised here by truncated SVD (one low-rank code path);
* transparent decoder / encoder: the same keys (the two published encoder files are even the same bytes);
  the encoder's output scale is LayerDiffuse's constant 300 whatever the file is called (section 2.4),
  decided by the file's content (its layout), with an explicit override. The encoder is optional: a
  missing or unusable one is reported and the model loads without it.

A file whose names or shapes do not fit is refused with the first mismatch named: the shapes of a
wrong block mapping would fit, which is why the mapping is derived from the UNet's config and tested.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import nn

from backend.models.file_kinds import FORMATS, identify
from backend.models.ldm_names import attention_block_map
from backend.models.lowrank import LowRankDelta
from backend.models.options import DEFAULT_RANK
from backend.models.tiny import attention_projections
from backend.models.weight_files import (
    TensorInfo,
    WeightFileError,
    check_names_and_shapes,
    load_tensors,
    read_header,
)

ATTN_ORIGINAL = "layer_xl_transparent_attn.safetensors"
ATTN_DIFFUSERS = "ld_diffusers_sdxl_attn.safetensors"
DECODER_FILES = ("vae_transparent_decoder.safetensors", "ld_diffusers_sdxl_vae_transparent_decoder.safetensors")
# The names the encoder is published under; only used to find it, never to choose its scale.
ENCODER_FILES = ("vae_transparent_encoder.safetensors", "ld_diffusers_sdxl_vae_transparent_encoder.safetensors")
# LayerDiffuse multiplies the transparent encoder's output by 300 ("similar to LoRA's alpha") for the one
# published encoder, which both repositories ship under different names (METHOD.md section 2.4).
LAYERDIFFUSE_ENCODER_SCALE = 300.0
# The tiny test model's encoder is its own random model at narrower widths, sized for x1 (the in-memory
# tiny bundle's default): it has to give the same latents whether it is read from disk or built in memory.
TINY_ENCODER_SCALE = 1.0
log = logging.getLogger(__name__)
LORA_KEY = re.compile(r"^diffusion_model\.(?P<name>.+)\.weight::(?P<kind>[a-z_]+)::(?P<index>\d+)$")



@dataclass
class LayerDiffuseFiles:
    attn: Path
    decoder: Path
    encoder: Optional[Path] = None
    # None: from the encoder file's layout (encoder_scales_by_width); a number overrides it.
    encoder_scale: Optional[float] = None


def find_files(folder: Path) -> Optional[LayerDiffuseFiles]:
    """The LayerDiffuse files in one folder (e.g. ComfyUI's ``models/layer_model``); the original
    layout first, as ComfyUI/Forge users have it. None when attention or decoder is missing."""
    def first(names: tuple[str, ...]) -> Optional[Path]:
        return next((Path(folder, n) for n in names if Path(folder, n).is_file()), None)

    attn = first((ATTN_ORIGINAL, ATTN_DIFFUSERS))
    decoder = first(DECODER_FILES)
    if attn is None or decoder is None:
        return None
    return LayerDiffuseFiles(attn, decoder, first(ENCODER_FILES))


def encoder_scale_for(path: Path) -> float:
    """The factor the encoder's output is multiplied by, from the file's layout (never its name):
    LayerDiffuse's 300 for the published widths. Raises WeightFileError for a file of another layout."""
    header = read_header(path)
    kind = identify(header)
    if kind != "layerdiffuse-encoder":
        raise WeightFileError(f"{path}: not a transparent VAE encoder (looks like: {FORMATS[kind]})")
    from backend.models.transparent_vae import FULL_ENCODER_CHANNELS

    found = {k: v.shape for k, v in header.items()}
    for widths, scale in encoder_scales_by_width().items():
        with torch.device("meta"):  # shapes only: no full-size encoder allocated to compare against
            expected = {k: tuple(v.shape) for k, v in encoder_module(widths).state_dict().items()}
        if found == expected:
            return scale
    validate_module_file(path, encoder_module(FULL_ENCODER_CHANNELS))  # names the first misfit
    raise AssertionError("unreachable: the published layout fits")


def encoder_scales_by_width() -> dict[tuple[int, ...], float]:
    """Encoder widths -> output scale: the published layout's 300, the tiny test model's 1."""
    # Imported here: transparent_vae pulls in diffusers' blocks, which reading a header does not need.
    from backend.models.transparent_vae import FULL_ENCODER_CHANNELS, TINY_ENCODER_CHANNELS

    return {FULL_ENCODER_CHANNELS: LAYERDIFFUSE_ENCODER_SCALE, TINY_ENCODER_CHANNELS: TINY_ENCODER_SCALE}


def load_optional_encoder(files: LayerDiffuseFiles, channels: tuple[int, ...], dtype: torch.dtype = torch.float32,
                          ) -> tuple[Optional[nn.Module], float]:
    """The transparent encoder and its output scale (the override, else that of its widths), or
    ``(None, 1.0)`` with a warning naming the file and the problem: only re-blend needs the encoder, so
    a missing, unreadable or misfitting one must not stop the model from loading."""
    consequence = "re-blend will use the plain VAE latent of the foreground (no transparent offset)"
    if files.encoder is None:
        log.warning(
            "no transparent VAE encoder file (%s): %s", " or ".join(ENCODER_FILES), consequence)
        return None, 1.0
    try:
        encoder = load_encoder(files.encoder, channels, dtype)
    except (WeightFileError, OSError) as err:
        log.warning("transparent VAE encoder not used: %s; %s", err, consequence)
        return None, 1.0
    # Strictly loaded at ``channels``, so its layout is known; an override always wins.
    scale = files.encoder_scale if files.encoder_scale is not None else encoder_scales_by_width().get(
        tuple(channels), LAYERDIFFUSE_ENCODER_SCALE)
    return encoder, float(scale)


# --- transparent attention ----------------------------------------------------------------------------

def _projection_shapes(unet: nn.Module) -> dict[str, tuple[int, int]]:
    modules = dict(unet.named_modules())
    return {name: tuple(modules[name].weight.shape) for name in attention_projections(unet)}


def lora_key_map(unet_config: Mapping[str, Any]) -> dict[str, str]:
    """ldm prefix -> diffusers prefix of each transformer stack (the key-mapping the LoRA file needs)."""
    return attention_block_map(unet_config)


def _diffusers_name(ldm_name: str, blocks: Mapping[str, str]) -> Optional[str]:
    for old, new in blocks.items():
        if ldm_name.startswith(old + "."):
            return new + ldm_name[len(old):]
    return None


def validate_attention(path: Path, unet: nn.Module) -> tuple[str, dict[str, dict[int, str]]]:
    """Check a transparent-attention file's names and shapes against ``unet`` (which may live on the
    meta device) from the header alone; returns the layout and, for the LoRA layout, the key pairs."""
    header = read_header(path)
    kind = identify(header)
    shapes = _projection_shapes(unet)
    if kind == "layerdiffuse-attn-lora":
        config: Any = unet.config  # diffusers' FrozenDict, typed as Tensor | Module by nn.Module
        return kind, _lora_pairs(path, header, shapes, dict(config))
    if kind == "layerdiffuse-attn-dense":
        _check_dense(path, header, shapes)
        return kind, {}
    raise WeightFileError(f"{path}: not a transparent-attention file (looks like: {FORMATS[kind]})")


def _check_dense(path: Path, header: Mapping[str, TensorInfo], shapes: dict[str, tuple[int, int]]) -> None:
    """Exactly one ``<projection>.weight`` offset per attention projection of the UNet, or the first
    tensor that does not fit is named with what was expected there.

    A bias offset of a known projection is refused, not ignored: the published file holds exactly the 560
    weight offsets (its size says so, METHOD.md 2.2.3), a non-zero bias would change the model, and the
    low-rank delta carries weights only; dropping it silently would load a different model than the file."""
    expected = {f"{name}.weight": shape for name, shape in shapes.items()}
    example = next(iter(expected), "<projection>.weight")
    for key, info in header.items():
        if key in expected:
            if tuple(info.shape) != tuple(expected[key]):
                raise WeightFileError(f"{path}: tensor '{key}' has shape {list(info.shape)}, expected "
                                      f"{list(expected[key])} (the offset of that projection's weight)")
            continue
        if key.endswith(".bias") and key[: -len(".bias")] in shapes:
            why = "a bias offset: LayerFusion applies weight offsets only and will not drop it silently"
        else:
            why = "not the weight of an attention projection of this UNet"
        raise WeightFileError(f"{path}: unexpected tensor '{key}' ({why}); expected only the {len(expected)} "
                              f"'<attention projection>.weight' offsets, e.g. '{example}'")
    for key in expected:
        if key not in header:
            missing = sum(k not in header for k in expected)
            raise WeightFileError(f"{path}: missing tensor '{key}' ({missing} missing)")


def load_attention(path: Path, unet: nn.Module, rank: int = DEFAULT_RANK,
                   device: torch.device | str = "cpu", cache_dir: Optional[Path] = None) -> LowRankDelta:
    """Either layout of the transparent-attention file as low-rank offsets of ``unet``'s projections.
    With ``cache_dir``, the dense layout's factorisation is kept there and reused on the next load."""
    kind, pairs = validate_attention(path, unet)
    if kind == "layerdiffuse-attn-dense":
        cached = _factor_cache(path, rank, cache_dir)
        if cached is not None and cached.is_file():
            stored = load_tensors(cached)
            return LowRankDelta({k[: -len("::up")]: (v, stored[k[: -len("::up")] + "::down"])
                                 for k, v in stored.items() if k.endswith("::up")})
        delta = factorise_dense({k[: -len(".weight")]: v for k, v in load_tensors(path).items()}, rank, device)
        if cached is not None:
            from backend.models.weight_files import save_tensors

            flat = {f"{name}::{part}": t for name, (up, down) in delta.factors.items()
                    for part, t in (("up", up), ("down", down))}
            save_tensors(flat, cached)
        return delta
    tensors = load_tensors(path)
    factors = {}
    for name, keys in pairs.items():
        up, down = tensors[keys[0]].float(), tensors[keys[1]].float()
        if up.shape[1] != down.shape[0]:
            raise WeightFileError(f"{path}: '{keys[0]}' and '{keys[1]}' have different ranks")
        factors[name] = (up, down)
    return LowRankDelta(factors)


def _factor_cache(path: Path, rank: int, cache_dir: Optional[Path]) -> Optional[Path]:
    """Where the factors of a dense file are kept: keyed by the file's identity and the rank."""
    if cache_dir is None:
        return None
    import hashlib

    stat = Path(path).stat()
    key = hashlib.sha256(f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{rank}".encode()).hexdigest()
    return Path(cache_dir) / "factorised" / f"{Path(path).stem}-{key[:16]}.safetensors"


# Extra columns of the randomised range finder: with ``rank + OVERSAMPLE`` probes the column space of a
# rank-``rank`` matrix is captured exactly (up to rounding), not approximately.
OVERSAMPLE = 16
# A dense offset whose rank-``rank`` factorisation misses more than this (relative Frobenius norm) is
# not the densified LoRA we expect; it still loads, with a warning.
RESIDUAL_WARNING = 1e-2


def factorise_dense(offsets: dict[str, torch.Tensor], rank: int = DEFAULT_RANK,
                    device: torch.device | str = "cpu") -> LowRankDelta:
    """Dense offsets -> ``up @ down`` of rank <= ``rank``. A full SVD of all 560 SDXL offsets takes many
    minutes on a CPU; a randomised SVD with a few more probes than ``rank`` is exact for offsets of
    rank <= ``rank`` (the published file is a densified rank-256 LoRA, METHOD.md 2.2.3) and ~50x faster.
    Small matrices take the plain SVD. Runs on ``device`` (a GPU does all 560 in seconds)."""
    factors, worst = {}, ("", 0.0)
    for name, delta in offsets.items():
        matrix = delta.to(device=device, dtype=torch.float32)
        if min(matrix.shape) <= rank + OVERSAMPLE:
            single = LowRankDelta.from_dense({name: matrix}, rank).factors[name]
        else:
            generator_state = torch.random.get_rng_state()
            torch.manual_seed(0)  # deterministic probes: the same file always gives the same factors
            u, s, v = torch.svd_lowrank(matrix, q=rank + OVERSAMPLE, niter=2)
            torch.random.set_rng_state(generator_state)
            root = s[:rank].sqrt()
            single = ((u[:, :rank] * root).contiguous(), (root[:, None] * v[:, :rank].T).contiguous())
        up, down = single
        residual = (torch.linalg.matrix_norm(matrix - up @ down) / torch.linalg.matrix_norm(matrix).clamp_min(1e-12))
        if residual.item() > worst[1]:
            worst = (name, residual.item())
        factors[name] = (up.cpu(), down.cpu())
    if worst[1] > RESIDUAL_WARNING:
        log.warning(
            "dense transparent-attention offsets are not rank %d: '%s' keeps only %.1f%% of its norm",
            rank, worst[0], 100 * (1 - worst[1]))
    return LowRankDelta(factors)


def _lora_pairs(path: Path, header: Mapping[str, TensorInfo], shapes: dict[str, tuple[int, int]],
                unet_config: dict) -> dict[str, dict[int, str]]:
    blocks = lora_key_map(unet_config)
    pairs: dict[str, dict[int, str]] = {}
    for key, info in header.items():
        match = LORA_KEY.match(key)
        name = _diffusers_name(match["name"], blocks) if match else None
        if match is None or match["kind"] != "lora" or match["index"] not in ("0", "1") or name not in shapes:
            raise WeightFileError(f"{path}: unexpected tensor '{key}' (no attention projection of this UNet)")
        out_features, in_features = shapes[name]
        index = int(match["index"])
        if len(info.shape) != 2 or info.shape[index] != (out_features if index == 0 else in_features):
            role = f"up [{out_features}, rank]" if index == 0 else f"down [rank, {in_features}]"
            raise WeightFileError(f"{path}: tensor '{key}' has shape {list(info.shape)}, expected {role}")
        pairs.setdefault(name, {})[index] = key
    for name in shapes:
        if len(pairs.get(name, {})) != 2:
            raise WeightFileError(f"{path}: missing the LoRA pair for '{name}' ({len(shapes) - len(pairs)} "
                                  "projections without one)")
    return pairs


# --- transparent VAE ----------------------------------------------------------------------------------

def validate_module_file(path: Path, module: nn.Module) -> None:
    """Names and shapes of ``path`` against ``module``'s state dict, from the header alone."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    check_names_and_shapes(expected, {k: v.shape for k, v in read_header(path).items()}, str(path))


def _load_module(path: Path, module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Strictly fill a meta-device ``module`` from ``path``."""
    validate_module_file(path, module)
    module.load_state_dict(load_tensors(path), strict=True, assign=True)
    return module.to(dtype).eval()


def decoder_module(channels: tuple[int, ...], latent_level: int = 3) -> nn.Module:
    """An empty (meta-device) decoder of the given widths: shapes without memory."""
    from backend.models.transparent_vae import TransparentVAEDecoder

    with torch.device("meta"):
        return TransparentVAEDecoder(channels, latent_level=latent_level)


def encoder_module(channels: tuple[int, ...]) -> nn.Module:
    from backend.models.transparent_vae import TransparentVAEEncoder

    with torch.device("meta"):
        return TransparentVAEEncoder(channels)


def load_decoder(path: Path, channels: tuple[int, ...], latent_level: int = 3,
                 dtype: torch.dtype = torch.float32) -> nn.Module:
    return _load_module(path, decoder_module(channels, latent_level), dtype)


def load_encoder(path: Path, channels: tuple[int, ...], dtype: torch.dtype = torch.float32) -> nn.Module:
    return _load_module(path, encoder_module(channels), dtype)
