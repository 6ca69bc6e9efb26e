"""The images a job brings, decoded in full and checked for what the PNG header cannot say.

The protocol checks each upload's header (size, colour type); here the pixels are read: a foreground
layer must have a visible pixel (something to place) and a transparent one (something to blend
around), and a background that should be RGB but carries transparency is flattened on white, the
colour of Krita's default canvas, with a notice in the job's params.
"""
from __future__ import annotations

import base64
import io
import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from PIL import Image

from backend.pipeline import decoding
from shared.fields import Unprocessable
from shared.protocol import (
    AddBackgroundRequest,
    AddForegroundRequest,
    HarmonizeRequest,
    JobRequest,
    ReblendRequest,
)


def decode_png(text: str, field: str) -> Image.Image:
    """A request's base64 PNG decoded in full; a broken one is Unprocessable naming its field."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(base64.b64decode(text))) as image:
                image.load()
                return image.copy()
    except Exception as err:  # PIL raises many kinds for broken data
        raise Unprocessable("invalid_image", "'%s' could not be decoded: %s"
                            % (field, str(err) or type(err).__name__), field) from None


def encode_png(image: Image.Image, compress_level: int = 6) -> str:
    """An image as a request's (or an event's) base64 PNG: what ``decode_png`` reads."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass
class JobInputs:
    """The artist's layers of one job as 8-bit arrays: RGBA foregrounds bottom first, an RGB background."""

    foreground_arrays: list[np.ndarray] = field(default_factory=list)
    background_array: Optional[np.ndarray] = None
    previous_blend: Optional[np.ndarray] = None  # a local re-blend's blend now on the canvas, RGB
    notices: list[str] = field(default_factory=list)

    @property
    def foregrounds(self) -> list[torch.Tensor]:
        return [decoding.from_uint8(a)[0] for a in self.foreground_arrays]

    @property
    def background(self) -> Optional[torch.Tensor]:
        return None if self.background_array is None else decoding.from_uint8(self.background_array)[0]

    def background_uint8(self) -> np.ndarray:
        assert self.background_array is not None
        return self.background_array

    def foreground_stack(self) -> np.ndarray:
        """The foreground layers merged into one RGBA layer (straight alpha), as they stack."""
        return decoding.merge_layers(self.foreground_arrays)


def read_foreground(text: str, field: str) -> np.ndarray:
    array = np.asarray(decode_png(text, field).convert("RGBA"))
    alpha = array[..., 3]
    if alpha.max() == 0:
        raise Unprocessable("invalid_image", "'%s' has no visible pixel: there is nothing to place" % field, field)
    if alpha.min() == 255:
        raise Unprocessable(
            "invalid_image",
            "'%s' has no transparent pixel: there is nothing to blend it into (give the layer transparency "
            "around the object)" % field, field)
    return array


def read_background(text: str, field: str, notices: list[str], *, flatten: bool = True) -> np.ndarray:
    """RGB; an RGBA upload with transparency is flattened on white (``flatten``) or its alpha dropped."""
    image = decode_png(text, field)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"))
        if flatten and rgba[..., 3].min() < 255:
            white = np.full(rgba.shape[:2] + (3,), 255, np.uint8)
            notices.append("'%s' had transparent pixels: it was flattened on white" % field)
            return decoding.alpha_over(rgba, white)
        return np.ascontiguousarray(rgba[..., :3])
    return np.asarray(image.convert("RGB"))


def read_inputs(request: JobRequest) -> JobInputs:
    """Every upload of ``request`` decoded and checked (nothing for a generate request)."""
    inputs = JobInputs()
    if isinstance(request, ReblendRequest):
        inputs.foreground_arrays = [read_foreground(request.foreground_png, "foreground_png")]
        # A re-blend's background is a layer this plugin made: its alpha is ignored, as documented.
        inputs.background_array = read_background(request.background_png, "background_png", inputs.notices,
                                                  flatten=False)
        if request.previous_blend_png is not None:
            inputs.previous_blend = read_background(request.previous_blend_png, "previous_blend_png",
                                                    inputs.notices, flatten=False)
    elif isinstance(request, AddForegroundRequest):
        inputs.background_array = read_background(request.background_png, "background_png", inputs.notices)
    elif isinstance(request, AddBackgroundRequest):
        inputs.foreground_arrays = [read_foreground(request.foreground_png, "foreground_png")]
    elif isinstance(request, HarmonizeRequest):
        inputs.foreground_arrays = [read_foreground(layer.png, "foregrounds[%d].png" % i)
                                    for i, layer in enumerate(request.foregrounds)]
        inputs.background_array = read_background(request.background_png, "background_png", inputs.notices)
    return inputs
