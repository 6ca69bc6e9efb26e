"""Pixels between PNG bytes, QImage and Krita's BGRA byte order, with the heavy parts off the UI thread.

Krita 8-bit RGBA layers hold B, G, R, A bytes, not premultiplied: exactly QImage.Format.Format_ARGB32 on a
little-endian machine, so conversions are a format change and a memcpy.
"""
from typing import Any, Callable, Optional, Set, Tuple

from .qt import (
    QBuffer,
    QByteArray,
    QImage,
    QImageReader,
    QIODevice,
    QObject,
    QRunnable,
    Qt,
    QThreadPool,
    QTimer,
    pyqtSignal,
)


class ImageError(ValueError):
    """An image could not be decoded or has the wrong size."""


def decode_png(data: bytes) -> QImage:
    # QImageReader.read lets go of Python's GIL while it decodes; QImage.loadFromData holds it, so a
    # decode on the pool froze the UI thread for the whole decode (250 ms for a 1024² triplet).
    buffer = QBuffer()
    buffer.setData(QByteArray(data))
    buffer.open(QIODevice.OpenModeFlag.ReadOnly)
    image = QImageReader(buffer, b"PNG").read()
    if image.isNull():
        raise ImageError("the server sent an image Qt cannot read")
    return image


def fitted(image: QImage, width: int, height: int) -> QImage:
    """``image`` as non-premultiplied ARGB32 of exactly width x height (scaled smoothly if needed)."""
    if image.width() != width or image.height() != height:
        image = image.scaled(width, height, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation)
    if image.format() != QImage.Format.Format_ARGB32:
        image = image.convertToFormat(QImage.Format.Format_ARGB32)
    return image


def bgra_bytes(image: QImage) -> bytes:
    """The pixel bytes of an ARGB32 image, rows packed (Krita's setPixelData layout)."""
    if image.format() != QImage.Format.Format_ARGB32:
        image = image.convertToFormat(QImage.Format.Format_ARGB32)
    row = image.width() * 4
    ptr = image.constBits()
    ptr.setsize(image.bytesPerLine() * image.height())
    data = bytes(ptr)
    if image.bytesPerLine() == row:
        return data
    stride = image.bytesPerLine()
    return b"".join(data[y * stride : y * stride + row] for y in range(image.height()))


def image_from_bgra(data: bytes, width: int, height: int) -> QImage:
    """A deep-copied ARGB32 QImage of Krita pixel bytes (the copy owns its memory)."""
    if len(data) != width * height * 4:
        raise ImageError("expected %d bytes of pixels, got %d" % (width * height * 4, len(data)))
    return QImage(data, width, height, width * 4, QImage.Format.Format_ARGB32).copy()


def encode_png(image: QImage) -> bytes:
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    # Qt maps PNG quality 80 to zlib level 1: these PNGs cross loopback, speed beats size.
    if not image.save(buffer, "PNG", 80):
        raise ImageError("could not encode a PNG")
    return bytes(buffer.data())


def png_to_bgra(data: bytes, width: int, height: int) -> bytes:
    return bgra_bytes(fitted(decode_png(data), width, height))


def has_partial_alpha(image: QImage) -> bool:
    """Whether some pixel is neither fully transparent nor fully opaque (cheap sampling)."""
    image = fitted(image, image.width(), image.height())
    data = bgra_bytes(image)
    return any(0 < a < 255 for a in data[3::4][:: max(1, len(data) // 4 // 4096)])


def thumbnail(data: bytes, size: int = 96) -> QImage:
    return decode_png(data).scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)


class _Relay(QObject):
    done = pyqtSignal(object, object)  # result, error


class _Task(QRunnable):
    def __init__(self, work: Callable[[], Any], relay: _Relay) -> None:
        super().__init__()
        self.work = work
        self.relay = relay

    def run(self) -> None:
        try:
            result, error = self.work(), None
        except Exception as err:  # reported to the UI thread, never raised in the pool
            result, error = None, err
        self.relay.done.emit(result, error)


_live: Set[_Relay] = set()


def in_background(work: Callable[[], Any], done: Callable[[Any, Optional[BaseException]], None]) -> None:
    """Run ``work`` on Qt's thread pool; ``done(result, error)`` is called back on the UI thread.

    QImage is safe to use off the UI thread (unlike QPixmap or anything of Krita's), so decoding,
    scaling and PNG encoding go here and the UI thread only copies finished bytes into layers.
    """
    relay = _Relay()  # lives in the calling (UI) thread, so the emit from the pool is queued there
    _live.add(relay)

    def deliver(result: Any, error: Optional[BaseException]) -> None:
        # Dropping the last reference here would delete the relay inside its own signal: crash.
        QTimer.singleShot(0, lambda: _live.discard(relay))
        done(result, error)

    relay.done.connect(deliver)
    task = _Task(work, relay)
    task.setAutoDelete(True)
    QThreadPool.globalInstance().start(task)


def decode_triplet(images: "dict[str, bytes]", width: int, height: int) -> "dict[str, bytes]":
    """PNG bytes by layer name -> BGRA bytes of width x height; meant for ``in_background``."""
    return {name: png_to_bgra(data, width, height) for name, data in images.items()}


def size_of(data: bytes) -> Tuple[int, int]:
    image = decode_png(data)
    return image.width(), image.height()
