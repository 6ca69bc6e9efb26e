"""Reading a PNG's header without an image library, so both sides can check uploads cheaply."""
from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MODES = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}


class PngInfo(NamedTuple):
    width: int
    height: int
    bit_depth: int
    color_type: int

    @property
    def mode(self) -> str:
        return _MODES.get(self.color_type, "unknown")

    @property
    def has_alpha(self) -> bool:
        return self.color_type == 6

    @property
    def is_color(self) -> bool:
        return self.color_type in (2, 6)


def png_info(data: bytes) -> PngInfo:
    """Size and colour type from the IHDR chunk; ValueError if this is not a well-formed PNG start."""
    if len(data) < 33 or not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    length, kind = struct.unpack(">I4s", data[8:16])
    if kind != b"IHDR" or length != 13:
        raise ValueError("the PNG does not start with an IHDR chunk")
    body = data[16:29]
    (crc,) = struct.unpack(">I", data[29:33])
    if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
        raise ValueError("the PNG header is corrupt")
    width, height, depth, color_type = struct.unpack(">IIBB", body[:10])
    if width == 0 or height == 0:
        raise ValueError("the PNG has no pixels")
    if color_type not in _MODES or depth not in (1, 2, 4, 8, 16):
        raise ValueError("the PNG has an unsupported colour type")
    return PngInfo(width, height, depth, color_type)
