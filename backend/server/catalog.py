"""What GET /v1/models lists: the presets and the model being served."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from shared.protocol import ModelInfo, ModelList

PRESETS = {
    "tiny": "Tiny SDXL-shaped model with random weights: paints noise, fast, offline; for tests.",
    "sdxl": "SDXL base with the LayerDiffuse transparency files (the artist's default).",
}


def model_kind(name: str) -> str:
    if name in PRESETS:
        return "preset"
    path = Path(name).expanduser()
    if path.is_dir():
        return "diffusers"
    if path.suffix in (".safetensors", ".ckpt") or path.is_file():
        return "single_file"
    return "hub"


def model_list(loaded: str, models_dir: Optional[str]) -> ModelList:
    names: List[str] = list(PRESETS)
    if loaded not in names:
        names.append(loaded)
    models = []
    for name in names:
        kind = model_kind(name)
        if kind == "preset":
            # The tiny model is written on first use; sdxl needs its downloaded files.
            available = name == "tiny" or (models_dir is not None and Path(models_dir).expanduser().is_dir())
        elif kind == "hub":
            available = True  # resolved from the local Hugging Face cache when loading
        else:
            available = Path(name).expanduser().exists()
        models.append(
            ModelInfo(
                name=name,
                kind=kind,
                available=available,
                loaded=name == loaded,
                description=PRESETS.get(name, "Model at %s" % name),
            )
        )
    return ModelList(models=models, loaded=loaded)
