"""LoRA files: where they live, what format and base model each one is, read from the header alone.

Artists keep LoRAs in ComfyUI's ``models/loras`` or A1111's ``models/Lora``; ``--models-dir`` finds
either, ``--lora-dir`` adds folders. A LoRA is named by its path under its folder with ``/``
separators ("styles/ink.safetensors", as ComfyUI names them); the suffix may be left out. Nothing here
loads tensors: listing and checking a job's LoRAs cost a header read each (cached by mtime and size).
"""
from __future__ import annotations

import functools
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional

from backend.models import tiny
from backend.models.weight_files import TensorInfo, WeightFileError, is_torch_file, read_header

# Sub-folders of a models folder that hold LoRAs: ComfyUI, A1111/Forge, and lower-case A1111 copies.
LORA_SUBFOLDERS = ("loras", "Lora", "lora")
LORA_PATTERNS = ("*.safetensors", "*.ckpt", "*.pt")
# The cross-attention width (the text embedding the UNet reads) says which family a LoRA was trained for.
CONTEXT_WIDTHS = {768: "sd1", 1024: "sd2", 2048: "sdxl", tiny.UNET_CONFIG["cross_attention_dim"]: "tiny"}
# kohya's ``ss_base_model_version`` and the model spec's ``modelspec.architecture`` prefixes.
METADATA_BASES = (("sdxl", "sdxl"), ("stable-diffusion-xl", "sdxl"), ("sd_v1", "sd1"), ("stable-diffusion-v1", "sd1"),
                  ("sd_v2", "sd2"), ("stable-diffusion-v2", "sd2"), ("flux", "flux"), ("sd3", "sd3"),
                  ("stable-diffusion-3", "sd3"))
KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")
# What diffusers cannot apply (LyCORIS algorithms beyond LoCon, DoRA): named in the refusal.
UNSUPPORTED_LYCORIS = {"hada_w1_a": "LyCORIS LoHa", "lokr_w1": "LyCORIS LoKr", "lokr_w1_a": "LyCORIS LoKr",
                       "oft_diag": "LyCORIS OFT", "oft_blocks": "LyCORIS OFT", "diff": "LyCORIS full (diff)",
                       # diffusers drops DoRA's magnitudes with a warning: a silently different picture.
                       "dora_scale": "DoRA"}


class LoraError(ValueError):
    """A LoRA that cannot be used; ``name`` is the LoRA as the job gave it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class LoraFile:
    name: str
    path: Path
    format: str  # kohya | lycoris | diffusers | peft | unsupported
    base: str  # sdxl | sd1 | sd2 | tiny | flux | sd3 | unknown
    size: int
    rank: int = 0
    problem: str = ""  # why the file cannot be used by any model (format, corrupt header)

    @property
    def key(self) -> tuple[str, int, int]:
        """Changes when the file is replaced on disk: what the adapter cache is keyed by."""
        stat = self.path.stat()
        return str(self.path), stat.st_mtime_ns, stat.st_size

    def problem_for(self, architecture: str) -> str:
        """Why the model family ``architecture`` cannot take this LoRA; empty when it can."""
        if self.problem:
            return self.problem
        if self.base != architecture:
            family = {"sd1": "SD 1.5", "sd2": "SD 2.x", "sdxl": "SDXL", "tiny": "the tiny test model"}.get(
                self.base, self.base)
            return (f"LoRA '{self.name}' was trained for {family}, the model being served is {architecture}: "
                    "LayerDiffuse needs SDXL LoRAs (Pony, Illustrious and NoobAI LoRAs are SDXL)")
        return ""


def read_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` strings of a safetensors file (kohya writes its training settings there)."""
    if is_torch_file(path):
        return {}
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length).decode("utf-8"))
    meta = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def _format(names: Iterable[str], header: Mapping[str, TensorInfo]) -> tuple[str, str]:
    """(format, problem) from the tensor names: kohya / LyCORIS LoCon share kohya's names, a LoCon adds
    convolution factors (4-D ``lora_down``); diffusers and PEFT files use the pipeline's module paths."""
    names = list(names)
    for name in names:
        suffix = name.rsplit(".", 1)[-1] if "." in name else ""
        if suffix in UNSUPPORTED_LYCORIS:
            return "unsupported", (f"{UNSUPPORTED_LYCORIS[suffix]} is not supported; plain LoRA, LyCORIS LoCon and "
                                   "diffusers/PEFT LoRAs are")
    if any(n.startswith(KOHYA_PREFIXES) for n in names):
        conv = any(n.endswith("lora_down.weight") and len(header[n].shape) == 4 for n in names)
        return ("lycoris" if conv else "kohya"), ""
    if any(".lora_A." in n or n.endswith(".lora_A.weight") for n in names):
        return "peft", ""
    if any(".lora.down." in n or "_lora.down." in n or ".lora_linear_layer." in n for n in names):
        return "diffusers", ""
    return "unsupported", "no LoRA tensors (neither kohya, LyCORIS LoCon, diffusers nor PEFT names)"


def _down_width(name: str, info: TensorInfo) -> Optional[int]:
    """The input width of a down / A factor (its second dimension), None for other tensors."""
    if name.endswith(("lora_down.weight", ".lora.down.weight", ".lora_A.weight", ".down.weight")) and len(info.shape) >= 2:
        return info.shape[1]
    return None


def _base(header: Mapping[str, TensorInfo], metadata: Mapping[str, str]) -> str:
    """The family, from the text width the UNet's cross-attention keys read, else the metadata."""
    for name, info in header.items():
        if "attn2" in name and ("to_k" in name or "to_v" in name):
            width = _down_width(name, info)
            if width is not None:
                return CONTEXT_WIDTHS.get(width, "unknown")
    if any(name.startswith(("lora_transformer_", "transformer.", "lora_unet_double_blocks")) for name in header):
        return "flux"
    declared = (metadata.get("ss_base_model_version") or metadata.get("modelspec.architecture") or "").lower()
    for prefix, base in METADATA_BASES:
        if declared.startswith(prefix):
            return base
    # A text-encoder-only file: two encoders (te1/te2, text_encoder_2) is the SDXL family.
    if any(name.startswith(("lora_te2_", "text_encoder_2.")) for name in header):
        widths = {_down_width(n, i) for n, i in header.items() if n.startswith(("lora_te2_", "text_encoder_2."))}
        return "tiny" if tiny.TEXT_HIDDEN in widths else "sdxl"
    return "sd1" if any(name.startswith("lora_te_") for name in header) else "unknown"


def _rank(header: Mapping[str, TensorInfo]) -> int:
    return max((info.shape[0] for name, info in header.items() if _down_width(name, info) is not None), default=0)


@functools.lru_cache(maxsize=512)
def _describe_cached(path: str, name: str, mtime_ns: int, size: int) -> LoraFile:
    file = Path(path)
    try:
        header = read_header(file)
        metadata = read_metadata(file)
    except (WeightFileError, OSError, ValueError, UnicodeDecodeError) as err:
        return LoraFile(name, file, "unsupported", "unknown", size, problem=f"LoRA '{name}' cannot be read: {err}")
    kind, problem = _format(header, header)
    base = _base(header, metadata) if not problem else "unknown"
    if problem:
        problem = f"LoRA '{name}': {problem}"
    return LoraFile(name, file, kind, base, size, _rank(header), problem)


def describe(path: Path, name: str) -> LoraFile:
    stat = path.stat()
    return _describe_cached(str(path), name, stat.st_mtime_ns, stat.st_size)


def lora_folders(models_dir: Optional[str | Path], extra: Iterable[str | Path] = ()) -> list[Path]:
    """The LoRA folders that exist: ``--lora-dir`` ones first (an explicit choice wins a name clash)."""
    folders = [Path(p).expanduser() for p in extra]
    if models_dir:
        folders += [Path(models_dir, sub) for sub in LORA_SUBFOLDERS]
    seen: set[Path] = set()
    found = []
    for folder in folders:
        resolved = folder.resolve()
        if folder.is_dir() and resolved not in seen:
            seen.add(resolved)
            found.append(folder)
    return found


def _is_file(path: Path) -> bool:
    """Like ``Path.is_file``, also False for a name the file system cannot take (too long, NUL)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _files(folder: Path) -> list[Path]:
    return sorted(p for pattern in LORA_PATTERNS for p in folder.rglob(pattern) if p.is_file())


class LoraLibrary:
    """The LoRA files under a set of folders, looked up by name."""

    def __init__(self, folders: Iterable[Path]) -> None:
        self.folders = list(folders)

    @classmethod
    def from_options(cls, models_dir: Optional[str | Path], lora_dirs: Iterable[str | Path] = ()) -> "LoraLibrary":
        return cls(lora_folders(models_dir, lora_dirs))

    def list(self) -> list[LoraFile]:
        found: dict[str, LoraFile] = {}
        for folder in self.folders:
            for path in _files(folder):
                name = path.relative_to(folder).as_posix()
                found.setdefault(name, describe(path, name))
        return sorted(found.values(), key=lambda f: f.name.lower())

    def find(self, name: str) -> LoraFile:
        """The LoRA ``name`` (its path under a folder, suffix optional); LoraError says where it looked."""
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts or not name.strip():
            raise LoraError(name, f"LoRA '{name}': give its name under a LoRA folder, not a path outside one")
        for folder in self.folders:
            for candidate in (folder / relative, *(folder / f"{name}{s[1:]}" for s in LORA_PATTERNS)):
                if _is_file(candidate):
                    return describe(candidate, relative.as_posix() if candidate == folder / relative
                                    else candidate.relative_to(folder).as_posix())
        where = ", ".join(str(f) for f in self.folders) or "no LoRA folder (pass --models-dir or --lora-dir)"
        raise LoraError(name, f"no LoRA named '{name}' (looked in {where})")
