"""Running the canvas jobs (Add object, Generate background, Harmonize) through the controller's jobs.

The same path as Generate, never blocking the UI thread: the document side reads the pixels (UI
thread, Krita), the PNGs are scaled and encoded on Qt's thread pool, the job runs on the server with
its progress arriving as Server-Sent Events (client.JobRun), the result PNGs are decoded and scaled
back on the pool, and the document side places the layers (UI thread).
"""
import base64
import traceback
from typing import Any, Dict, List, Optional, Sequence

from .canvas_jobs import CanvasSource, add_background_body, add_foreground_body, harmonize_body, wanted_images
from .pixels import decode_triplet, encode_png, fitted, image_from_bgra, in_background
from .qt import QColor, QImage, QObject, QPainter
from .targets import UserError
from .wire import Body, ProtocolError, protocol, serialized

KINDS = ("add_foreground", "add_background", "harmonize")
WHAT = {"add_foreground": "Adding an object", "add_background": "Generating a background",
        "harmonize": "Harmonizing"}
DONE = {"add_foreground": "Added the object", "add_background": "Added the background",
        "harmonize": "Added the harmonized blend"}


def upload_png(data: bytes, keep_alpha: bool, source: CanvasSource) -> str:
    """Window pixels (BGRA) as the base64 PNG sent: scaled to the sent size; without alpha, flattened
    on white (what the server would do) so an RGB PNG goes out."""
    w = source.window
    image = fitted(image_from_bgra(data, w.width, w.height), w.gen_width, w.gen_height)
    if not keep_alpha:
        flat = QImage(image.width(), image.height(), QImage.Format.Format_RGB32)
        flat.fill(QColor(255, 255, 255))
        painter = QPainter(flat)
        painter.drawImage(0, 0, image)
        painter.end()
        image = flat
    return base64.b64encode(encode_png(image)).decode("ascii")


def request_body(settings: Any, source: CanvasSource, pngs: Sequence[str]) -> Dict[str, Any]:
    """The validated body for ``source`` once its uploads are encoded (same order)."""
    if source.kind == "add_foreground":
        return add_foreground_body(settings, source.window, pngs[0])
    if source.kind == "add_background":
        return add_background_body(settings, pngs[0], source.uploads[0][3])
    layers = [(png, upload[3]) for png, upload in zip(pngs[1:], source.uploads[1:])]
    return harmonize_body(settings, layers, pngs[0])


class CanvasJobs(QObject):
    """The controller's canvas jobs; ``controller.canvas``."""

    def __init__(self, controller: Any) -> None:
        super().__init__(controller)
        self.controller = controller
        self.runs: List[Any] = []
        controller.panel.canvas_job_clicked.connect(self.start)

    def start(self, kind: str, nodes: Optional[Sequence[Any]] = None) -> bool:
        """Read the canvas for ``kind`` and send the job; False (and a message) if it cannot go."""
        c = self.controller
        try:
            return self._start(kind, nodes)
        except Exception as err:  # the last line of defence, like controller.guarded
            traceback.print_exc()
            c.panel.show_error("Something went wrong: %s" % (err or type(err).__name__))
            return False

    def _start(self, kind: str, nodes: Optional[Sequence[Any]]) -> bool:
        c = self.controller
        s = c.panel.values()
        try:
            if kind == "add_foreground" and not s.foreground_prompt:
                raise UserError("Type a foreground prompt: what the object is.")
            if kind == "add_background" and not s.background_prompt:
                raise UserError("Type a background prompt: the scene to put behind the layer.")
            source = c.documents.canvas_source(kind, s.target_pixels, s.blend_layers, nodes)
        except UserError as err:
            c.panel.show_error(str(err))
            return False

        def encode() -> Body:  # on the pool: the PNGs, then the checked and serialized body
            pngs = [upload_png(data, alpha, source) for _role, data, alpha, _name in source.uploads]
            return serialized(request_body(s, source, pngs))

        def encoded(body: Any, error: Optional[BaseException]) -> None:
            if isinstance(error, UserError):
                c.panel.show_error(str(error))
                return
            if isinstance(error, ProtocolError):
                c.panel.show_error("Cannot send this request: %s" % error.message)
                return
            if error is not None:
                c.panel.show_error("Could not read the layers: %s" % error)
                return
            maps = protocol.LIGHT_NAMES if source.blend_layers else ()
            self.runs.append(c._start(body, lambda outcome: self._finished(source, outcome), maps))

        w = source.window
        c.panel.show_message("%s (%d×%d)…" % (WHAT[kind], w.gen_width, w.gen_height))
        in_background(encode, encoded)
        return True

    def _finished(self, source: CanvasSource, outcome: Any) -> None:
        c = self.controller
        self.runs = [run for run in self.runs if run.job_id != outcome.job_id]
        if outcome.state != "done":
            c._report(outcome)
            return
        names = wanted_images(source.kind, source.blend_layers)
        images = {name: outcome.images[name] for name in names if name in outcome.images}
        w = source.window

        def decoded(layers: Any, error: Optional[BaseException]) -> None:
            if error is not None:
                c.panel.show_error("Could not read the result images: %s" % error)
            elif not c.documents.is_open(source.document):
                c.panel.show_message("The document was closed; the result was dropped.")
            else:
                try:
                    result = c.documents.insert_canvas(source, layers, outcome.params, outcome.job_id)
                except Exception as err:  # the adapter rolled back; say why in plain words
                    c.panel.show_error("Could not insert the layers: %s" % err)
                else:
                    c.panel.show_message("%s." % DONE[source.kind])
                    c.inserted.emit(result)
            c.job_finished.emit(outcome)

        in_background(lambda: decode_triplet(images, w.width, w.height), decoded)
