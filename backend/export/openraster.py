"""OpenRaster (.ora) files: a zip of PNG layers plus stack.xml, which Krita and GIMP open as layers."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Sequence
from xml.sax.saxutils import quoteattr

from PIL import Image

THUMBNAIL_SIDE = 256


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def write_openraster(path: Path, layers: Sequence[tuple[str, Image.Image]]) -> None:
    """``layers`` top first, all the same size. The merged image is the layers composited in order."""
    if not layers:
        raise ValueError("an OpenRaster file needs at least one layer")
    width, height = layers[0][1].size
    merged = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    for _, image in reversed(layers):
        merged.alpha_composite(image.convert("RGBA"))
    thumbnail = merged.copy()
    thumbnail.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    entries = "".join(
        f'  <layer name={quoteattr(name)} src="data/layer{i}.png" x="0" y="0" opacity="1.0" '
        f'visibility="visible" composite-op="svg:src-over"/>\n'
        for i, (name, _) in enumerate(layers))
    stack = (f'<?xml version="1.0" encoding="UTF-8"?>\n<image version="0.0.3" w="{width}" h="{height}">\n'
             f"<stack>\n{entries}</stack>\n</image>\n")
    with zipfile.ZipFile(path, "w") as archive:
        # The spec wants "mimetype" first and uncompressed, so tools can sniff the type.
        archive.writestr(zipfile.ZipInfo("mimetype"), "image/openraster", compress_type=zipfile.ZIP_STORED)
        archive.writestr("stack.xml", stack, compress_type=zipfile.ZIP_DEFLATED)
        for i, (_, image) in enumerate(layers):
            archive.writestr(f"data/layer{i}.png", _png(image))
        archive.writestr("mergedimage.png", _png(merged))
        archive.writestr("Thumbnails/thumbnail.png", _png(thumbnail))
