"""A local re-blend on the plugin's side: what moved, and keeping every other pixel of the Blend.

The group's record keeps where the Foreground's visible pixels were when its Blend was made; a re-blend
sends the union of that box and where they are now (the region the move affected) with the current
Blend, and the server denoises only a crop around it. The server's feathered crop comes back at the
generation size; only that crop (in the group's pixels, rounded outward) is copied into the current
Blend, so every pixel outside it stays exactly as it was, whatever the scaling.
Boxes are (x, y, width, height) tuples relative to the group's rectangle unless said otherwise.
"""
import math
from typing import Any, Dict, Optional, Tuple

from .targets import Pixels, ReblendSource

Box = Tuple[int, int, int, int]


def alpha_box(bgra: bytes, width: int, height: int) -> Optional[Box]:
    """The bounds of the pixels with alpha > 0 of a width x height BGRA image; None if none is."""
    alpha = bgra[3::4]
    top, bottom, left, right = None, 0, width, 0
    for y in range(height):
        row = alpha[y * width:(y + 1) * width]
        start = width - len(row.lstrip(b"\0"))
        if start == width:
            continue
        top = y if top is None else top
        bottom = y + 1
        left = min(left, start)
        right = max(right, len(row.rstrip(b"\0")))
    if top is None:
        return None
    return left, top, right - left, bottom - top


def union(a: Box, b: Box) -> Box:
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return x0, y0, x1 - x0, y1 - y0


def scaled(box: Box, sx: float, sy: float, width: int, height: int) -> Box:
    """``box`` scaled by (sx, sy), rounded outward to whole pixels and kept inside width x height."""
    x0, y0 = max(0, math.floor(box[0] * sx)), max(0, math.floor(box[1] * sy))
    x1 = min(width, math.ceil((box[0] + box[2]) * sx))
    y1 = min(height, math.ceil((box[1] + box[3]) * sy))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def clip(box: Box, width: int, height: int) -> Box:
    """The part of ``box`` inside width x height (zero-sized where they do not meet)."""
    x0, y0 = min(max(box[0], 0), width), min(max(box[1], 0), height)
    x1, y1 = max(min(box[0] + box[2], width), x0), max(min(box[1] + box[3], height), y0)
    return x0, y0, x1 - x0, y1 - y0


def expand(data: bytes, box: Box, width: int, height: int) -> bytes:
    """BGRA ``data`` covering ``box`` as a width x height image, transparent around it."""
    x, y, w, h = box
    if (x, y, w, h) == (0, 0, width, height):
        return data
    out = bytearray(width * height * 4)
    for row in range(h):
        start = ((y + row) * width + x) * 4
        out[start:start + w * 4] = data[row * w * 4:(row + 1) * w * 4]
    return bytes(out)


def crop(data: bytes, width: int, box: Box) -> bytes:
    """The pixels of ``box`` out of BGRA ``data`` rows of ``width`` pixels (``expand``'s inverse)."""
    x, y, w, h = box
    return b"".join(data[((y + row) * width + x) * 4:((y + row) * width + x + w) * 4] for row in range(h))


def whole_foreground(source: ReblendSource) -> bytes:
    """The source's Foreground over the group's whole rectangle (it is read over its bounds only)."""
    t = source.target
    return expand(source.foreground, source.foreground_at or (0, 0, t.width, t.height), t.width, t.height)


def paste_box(previous: Pixels, new: bytes, width: int, box: Box) -> bytes:
    """``previous`` (BGRA rows of ``width`` pixels) with ``box`` taken from ``new`` (the same size)."""
    x, y, w, h = box
    out = bytearray(previous)
    for row in range(y, y + h):
        start = (row * width + x) * 4
        out[start:start + w * 4] = new[start:start + w * 4]
    return bytes(out)


def kept_outside(source: ReblendSource, params: Dict[str, Any], layers: Dict[str, bytes]) -> Dict[str, bytes]:
    """A local re-blend's result: the current Blend with only the server's crop replaced, so no pixel
    outside it changes through the scaling to and from the generation size."""
    region = params.get("local_region")
    if source.previous_blend is None or not (isinstance(region, list) and len(region) == 4):
        return layers
    t = source.target
    box = scaled(tuple(region), t.width / t.gen_width, t.height / t.gen_height, t.width, t.height)
    return {"blend": paste_box(source.previous_blend, layers["blend"], t.width, box)}
