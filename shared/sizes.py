"""Mapping a canvas rectangle to the size the model generates at."""
from __future__ import annotations

import math
from typing import Tuple

SDXL_PIXELS = 1024 * 1024
SDXL_MULTIPLE = 64


def generation_size(
    width: int, height: int, target_pixels: int = SDXL_PIXELS, multiple: int = SDXL_MULTIPLE
) -> Tuple[int, int]:
    """The size near ``target_pixels`` with the aspect of width x height, in multiples of ``multiple``.

    SDXL works best near one megapixel in multiples of 64; the result is scaled back to the canvas
    rectangle afterwards. Extreme aspects are capped at 4:1 so neither side collapses.
    """
    if width <= 0 or height <= 0:
        raise ValueError("the rectangle is empty")
    aspect = min(max(width / height, 0.25), 4.0)
    ideal_w = math.sqrt(target_pixels * aspect)
    ideal_h = ideal_w / aspect
    best = None
    for w in _around(ideal_w, multiple):
        for h in _around(ideal_h, multiple):
            # Prefer the candidate closest in aspect, then in pixel count.
            cost = (abs(math.log((w / h) / aspect)), abs(w * h - target_pixels))
            if best is None or cost < best[0]:
                best = (cost, (w, h))
    assert best is not None
    return best[1]


def _around(value: float, multiple: int) -> Tuple[int, ...]:
    low = max(multiple, int(value // multiple) * multiple)
    return (low, low + multiple)
