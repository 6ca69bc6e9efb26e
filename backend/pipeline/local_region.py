"""A local re-blend: which crop of the canvas to denoise, and how its result is feathered back in.

After the artist moves the foreground, only the region the move affected needs a new blend: the union
of the object's old and new bounds, plus a margin for the shadows and light it casts, which reach
beyond the object. That crop is denoised with SDXL's crop conditioning (original size = the canvas,
top-left = the crop's corner), and the previous blend is kept pixel for pixel outside it. Inside, the
new blend is weighted 1 over the changed region and its near margin, falling linearly to 0 at the
crop's edge so no seam shows; at an edge of the canvas there is nothing to blend into, so no ramp.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MARGIN_SHARE = 1 / 16  # of the canvas's longer side: shadows of an object reach about this far
MIN_MARGIN = 16  # px
GRID = 32  # crop sides in multiples of 32 px: SDXL's UNet halves its 1/8 latent twice
MIN_CROP = 64  # px per side


@dataclass(frozen=True)
class Box:
    """Pixels [x0, x1) x [y0, y1) of the canvas."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def margin_for(width: int, height: int) -> int:
    return max(MIN_MARGIN, round(MARGIN_SHARE * max(width, height)))


def _span(lo: int, hi: int, margin: int, size: int) -> tuple[int, int]:
    """[lo, hi) grown by ``margin``, then to whole grid cells and at least MIN_CROP, inside [0, size)."""
    want = max(GRID, -(-max(MIN_CROP, hi - lo + 2 * margin) // GRID) * GRID)
    if want >= size:
        return 0, size
    centre = (lo + hi) / 2
    start = int(round(centre - want / 2))
    start = min(max(0, start), size - want)
    return start, start + want


def crop_box(changed: Box, width: int, height: int) -> Box:
    """The crop a local re-blend denoises: ``changed`` grown by the canvas's margin on every side, its
    sides multiples of GRID (or the whole canvas side), kept inside the canvas."""
    margin = margin_for(width, height)
    x0, x1 = _span(changed.x0, changed.x1, margin, width)
    y0, y1 = _span(changed.y0, changed.y1, margin, height)
    return Box(x0, y0, x1, y1)


def _ramp(size: int, start: int, core_lo: int, core_hi: int, full: int) -> np.ndarray:
    """Weights along one axis of a crop [start, start + size) of a canvas side ``full``: 1 on the core,
    falling linearly to 0 at each crop edge that is not the canvas's edge."""
    position = np.arange(start, start + size, dtype=np.float32) + 0.5
    weight = np.ones(size, np.float32)
    if start > 0:
        span = max(1.0, core_lo - start)
        weight = np.minimum(weight, np.clip((position - start) / span, 0, 1))
    end = start + size
    if end < full:
        span = max(1.0, end - core_hi)
        weight = np.minimum(weight, np.clip((end - position) / span, 0, 1))
    return weight


def feather(crop: Box, changed: Box, width: int, height: int) -> np.ndarray:
    """[h, w] weights of the new blend inside ``crop``: 1 over ``changed`` grown by half the gap to the
    crop's edge, a linear ramp to 0 at the crop edges inside the canvas."""
    def core(lo: int, hi: int, c0: int, c1: int) -> tuple[int, int]:
        return lo - (lo - c0) // 2, hi + (c1 - hi) // 2

    cx0, cx1 = core(max(changed.x0, crop.x0), min(changed.x1, crop.x1), crop.x0, crop.x1)
    cy0, cy1 = core(max(changed.y0, crop.y0), min(changed.y1, crop.y1), crop.y0, crop.y1)
    wx = _ramp(crop.width, crop.x0, cx0, cx1, width)
    wy = _ramp(crop.height, crop.y0, cy0, cy1, height)
    return wy[:, None] * wx[None, :]


def paste(previous: np.ndarray, new_crop: np.ndarray, crop: Box, weight: np.ndarray) -> np.ndarray:
    """``previous`` [H, W, 3] uint8 with ``new_crop`` [h, w, 3] uint8 feathered into ``crop``; every pixel
    outside the crop, and inside where the weight is 0, is ``previous``'s own."""
    out = previous.copy()
    old = previous[crop.y0:crop.y1, crop.x0:crop.x1].astype(np.float32)
    mixed = old + weight[..., None] * (new_crop.astype(np.float32) - old)
    out[crop.y0:crop.y1, crop.x0:crop.x1] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return out
