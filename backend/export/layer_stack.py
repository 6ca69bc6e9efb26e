"""Which layers a job's result makes, top first, as the CLI writes them into ``layers.ora``.

The artist's own layers of a job on given layers (the canvas of add_foreground, the layer of
add_background, the layers of a harmonize) go into the file unchanged, so it opens as the whole picture.
"""
from __future__ import annotations

import base64
import io
from dataclasses import replace
from typing import Optional

import numpy as np
from PIL import Image

from backend.export.openraster import Entry, Group, Layer, light_stack
from backend.pipeline.decoding import merge_layers
from backend.pipeline.light_layers import LightLayers, compose_light_stack
from shared.protocol import (
    AddBackgroundRequest,
    AddForegroundRequest,
    HarmonizeRequest,
    JobRequest,
    ReblendRequest,
)

Stack = list[tuple[str, Image.Image]]
LIGHT_FIELDS = ("shadows", "light", "foreground_shadows", "foreground_light")


def _upload(text: str, mode: str) -> Image.Image:
    with Image.open(io.BytesIO(base64.b64decode(text))) as image:
        return image.convert(mode)


def job_stack(request: JobRequest, images: dict[str, Image.Image]) -> Stack:
    """The result's layers, top first: Blend, the foreground(s), Background (the artist's own as given)."""
    foregrounds: Stack = []
    background = images.get("background")
    if isinstance(request, (ReblendRequest, AddBackgroundRequest)):
        foregrounds = [("Foreground", _upload(request.foreground_png, "RGBA"))]
    elif isinstance(request, HarmonizeRequest):
        foregrounds = [("Layer %d" % (i + 1), _upload(layer.png, "RGBA"))
                       for i, layer in reversed(list(enumerate(request.foregrounds)))]
    elif "foreground" in images:
        foregrounds = [("Foreground", images["foreground"])]
    if isinstance(request, (ReblendRequest, AddForegroundRequest, HarmonizeRequest)):
        background = _upload(request.background_png, "RGB")
    stack: Stack = [("Blend", images["blend"])] if "blend" in images else []
    stack += foregrounds
    if background is not None:
        stack.append(("Background", background))
    return stack


def light_job_stack(request: JobRequest, images: dict[str, Image.Image]) -> tuple[list[Entry], Optional[Image.Image]]:
    """``job_stack``, or with blend layers the relight stack (``openraster.light_stack``: the blend hidden
    on top, the foreground group with its pair, Light, Shadows, Background) and its merged image; several
    foreground layers of a harmonize each keep their own layer inside the group."""
    plain = job_stack(request, images)
    if not all(name in images for name in LIGHT_FIELDS):
        return list(plain), None
    named = dict(plain)
    foregrounds = [(name, image) for name, image in plain if name not in ("Blend", "Background")]
    merged_fg = merge_layers([np.asarray(image.convert("RGBA")) for _, image in reversed(foregrounds)])
    background = np.asarray(named["Background"].convert("RGB"))
    layers = LightLayers(**{name: np.asarray(images[name].convert("RGB")) for name in LIGHT_FIELDS})
    entries = light_stack(merged_fg, background, layers, blend=np.asarray(images["blend"].convert("RGB")))
    if len(foregrounds) > 1:
        entries = [replace(e, children=[*e.children[:-1], *(Layer(n, i) for n, i in foregrounds)])
                   if isinstance(e, Group) else e for e in entries]
    merged = Image.fromarray(compose_light_stack(merged_fg, background, layers), "RGB")
    return entries, merged

