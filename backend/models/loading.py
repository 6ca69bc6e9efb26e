"""Turning a model name into a loaded ``ModelBundle`` (minimal: the tiny model; real weights follow)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from backend.models.bundle import ModelBundle


@dataclass
class LoadOptions:
    model: str = "tiny"
    models_dir: Optional[str] = None
    device: str = "auto"


def resolve_device(request: str) -> torch.device:
    if request != "auto":
        return torch.device(request)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def load_bundle(options: LoadOptions) -> ModelBundle:
    if options.model != "tiny":
        raise ValueError(f"model '{options.model}' cannot be loaded yet")
    from backend.models.tiny import build_bundle

    bundle = build_bundle()
    bundle.device = resolve_device(options.device)
    for module in (bundle.unet, bundle.vae, bundle.text_encoder, bundle.text_encoder_2,
                   bundle.transparent_decoder, bundle.transparent_encoder):
        module.to(bundle.device)
    bundle.transparent_attn = bundle.transparent_attn.to(bundle.device)
    return bundle
