"""The docker's live preview: the server's small image of what the job is making, step by step.

The preview stays in the docker, not on the canvas: Krita 5.1 records a layer's insertion and its
removal as undo steps and a script cannot hide them, so a temporary preview layer would leave two
entries in the artist's history, and Ctrl+Z past the result would bring back a stale preview that
looks like a result.
"""
from typing import Any, Optional

from .pixels import ImageError, decode_png
from .qt import QLabel, QPixmap, Qt, QWidget

MIN_SIDE = 160  # px: big enough to judge composition and light at a glance


class PreviewView(QLabel):
    """Shows the newest preview PNG scaled to the docker's width; hidden while no job runs."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumHeight(MIN_SIDE)
        self.setToolTip("What the running job is making (the server's preview, every step)")
        self.image: Optional[Any] = None
        self.frames = 0  # previews this view has shown (tests, and the benchmark)
        self.hide()

    def show_png(self, png: bytes) -> bool:
        """Decode and show one preview; False (and nothing changed) if it is not an image."""
        try:
            image = decode_png(png)
        except ImageError:
            return False
        self.image = image
        self.frames += 1
        self._paint()
        self.show()
        return True

    def clear_preview(self) -> None:
        self.image = None
        self.clear()
        self.hide()

    def resizeEvent(self, event: Any) -> None:  # Qt's name
        super().resizeEvent(event)
        if self.image is not None:
            self._paint()

    def _paint(self) -> None:
        width = max(1, self.width())
        height = max(MIN_SIDE, self.height())
        pixmap = QPixmap.fromImage(self.image).scaled(
            width, height, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
        self.setPixmap(pixmap)
