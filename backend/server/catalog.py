"""What GET /v1/models lists: the presets, whether their files are here, and the model being served.

Availability comes from backend.models.catalog (the same look-up ``python -m backend models list``
does); it reads file headers, so the handler runs this in a thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from backend.models import catalog
from backend.models.loras import LoraLibrary
from shared.protocol import LoraInfo, ModelInfo, ModelList


def model_kind(name: str) -> str:
    if name in catalog.PRESETS:
        return "preset"
    path = Path(name).expanduser()
    if path.is_dir():
        return "diffusers"
    if path.suffix in (".safetensors", ".ckpt") or path.is_file():
        return "single_file"
    return "hub"


def _sdxl_available(models_dir: Optional[Path]) -> bool:
    # What the loader's sdxl preset takes: a fine-tune in checkpoints/ is not the preset.
    return catalog.sdxl_base_available(models_dir) and catalog.layerdiffuse_files(models_dir) is not None


def _available(name: str, kind: str, models_dir: Optional[Path]) -> bool:
    if name == "tiny":
        return True  # written on first use
    if name == "sdxl":
        return _sdxl_available(models_dir)
    if kind == "hub":
        return catalog.cached_file(name, "model_index.json") is not None
    return Path(name).expanduser().exists()


def lora_list(library: LoraLibrary, architecture: str) -> List[LoraInfo]:
    """Every LoRA file in the library, with whether the served model's family takes it; usable first."""
    infos = []
    for file in library.list():
        reason = file.problem_for(architecture)
        infos.append(LoraInfo(name=file.name, base=file.base, format=file.format, size=file.size,
                              usable=not reason, reason=reason))
    return sorted(infos, key=lambda info: not info.usable)


def model_list(loaded: str, models_dir: Optional[str], library: Optional[LoraLibrary] = None,
               architecture: str = "sdxl") -> ModelList:
    folder = Path(models_dir).expanduser() if models_dir else None
    names: List[str] = list(catalog.PRESETS)
    if loaded not in names:
        names.append(loaded)
    models = []
    for name in names:
        kind = model_kind(name)
        try:
            available = _available(name, kind, folder)
        except (OSError, ValueError):
            available = False  # an unreadable folder or a name the hub cache cannot take
        models.append(
            ModelInfo(
                name=name,
                kind=kind,
                available=available,
                loaded=name == loaded,
                description=catalog.PRESETS.get(name, "model at %s" % name),
            )
        )
    loras = lora_list(library, architecture) if library is not None else []
    return ModelList(models=models, loaded=loaded, loras=loras)
