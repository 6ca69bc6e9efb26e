"""pixels.py: PNG decoding is exact, refuses what is not a PNG, and lets the UI thread run meanwhile."""
from __future__ import annotations

import os
import threading
import time

import pytest

from layerfusion.pixels import ImageError, bgra_bytes, decode_png, encode_png, image_from_bgra, png_to_bgra


def _noise(side: int) -> bytes:
    """BGRA bytes of opaque noise: a PNG of it cannot compress to nothing, so decoding takes a while."""
    data = bytearray(os.urandom(side * side * 4))
    data[3::4] = b"\xff" * (side * side)
    return bytes(data)


def test_round_trip_is_exact(qapp):
    pixels = _noise(37)
    assert bgra_bytes(decode_png(encode_png(image_from_bgra(pixels, 37, 37)))) == pixels
    assert png_to_bgra(encode_png(image_from_bgra(pixels, 37, 37)), 37, 37) == pixels


@pytest.mark.parametrize("data", [b"", b"not a png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_not_a_png_is_an_image_error(qapp, data):
    with pytest.raises(ImageError):
        decode_png(data)


def _longest_main_gap_inside_decode(png: bytes) -> tuple[float, float]:
    """(longest pause of a busy main thread while another thread decodes, that decode's duration)."""
    span: list[float] = []

    def decode() -> None:
        started = time.perf_counter()
        decode_png(png)
        span.extend([started, time.perf_counter()])

    stamps = []
    worker = threading.Thread(target=decode)
    worker.start()
    while worker.is_alive():
        stamps.append(time.perf_counter())
    worker.join()
    inside = [span[0]] + [s for s in stamps if span[0] < s < span[1]] + [span[1]]
    return max(b - a for a, b in zip(inside, inside[1:])), span[1] - span[0]


def test_decoding_on_another_thread_leaves_the_gil_to_the_ui_thread(qapp):
    # QImage.loadFromData holds the GIL for the whole decode: the main thread then stops for all of it.
    # A loaded machine may pause the main thread for other reasons, so one good try out of five is enough.
    png = encode_png(image_from_bgra(_noise(1536), 1536, 1536))
    tries = [_longest_main_gap_inside_decode(png) for _ in range(5)]
    assert any(gap < 0.5 * duration for gap, duration in tries), tries
