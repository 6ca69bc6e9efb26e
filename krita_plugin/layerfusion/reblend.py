"""Regenerate blend: read the Foreground as it now lies, and swap in the new Blend; plus auto re-blend.

Krita 5.1 cannot merge two node operations into one undo step, so the new Blend is *added* on top of
the old one (one undo step: Ctrl+Z shows the previous blend again). The old blend stays underneath,
renamed "Blend (previous)" so the group shows one "Blend"; the one before it is removed at the next
re-blend, so a group holds at most two. A rename is no undo step, so after a Ctrl+Z the restored top
blend keeps its "(previous)" name until the group is next read (Regenerate blend, the auto re-blend
watcher), which names the top one "Blend" again.
Krita emits no signal when a layer moves, hence the polling watcher below.
"""
import time
from typing import Any, Dict, Optional, Tuple

from .canvas_layers import CanvasDocuments, pixels_beneath
from .controller import Controller
from .layers import (
    BLENDED_AT,
    KritaDocuments,
    by_uid,
    children,
    find_group,
    layer_pixels,
    member,
    read_records,
    uid,
    write_pixels,
    write_records,
)
from .live_throttle import LiveThrottle
from .local_blend import Box, alpha_box, union
from .qt import QObject, QTimer
from .settings import Settings
from .targets import MASK, ReblendSource, Target, UserError

BLEND, PREVIOUS = "Blend", "Blend (previous)"
POLL_MS = 250
LIVE_POLL_MS = 60  # with Fast and auto re-blend: often enough to follow a drag
SETTLE_MS = 700  # the foreground must stay put this long before an automatic re-blend


def read_source(doc: Any, group: Any) -> ReblendSource:
    record = read_records(doc).get(uid(group))
    if record is None:
        raise UserError("This group was not made by LayerFusion.")
    on_canvas = record.get("kind") == "add_foreground"  # its background is the artist's canvas
    fg = member(doc, group, "foreground")
    bg = None if on_canvas else member(doc, group, "background")
    if fg is None or (bg is None and not on_canvas):
        raise UserError("The group has lost its Foreground or Background layer.")
    name_blends(doc, group)
    x, y, w, h = record["rect"]
    gen_w, gen_h = record["generation_size"]
    target = Target(doc, x, y, w, h, gen_w, gen_h)
    foreground = layer_pixels(fg, (x, y, w, h))
    # An added object's background is what lies beneath its group now, the artist's edits included.
    background = pixels_beneath(doc, group, (x, y, w, h)) if bg is None else layer_pixels(bg, (x, y, w, h))
    source = ReblendSource(doc, uid(group), target, foreground, background, dict(record.get("params", {})),
                           foreground_box=alpha_box(foreground, w, h))
    blends = blend_layers(doc, group)
    before = blended_box(record, blends[-1]) if blends else None
    if source.foreground_box is not None and before is not None:
        source.changed = union(before, source.foreground_box)
        source.previous_blend = layer_pixels(blends[-1], (x, y, w, h))
    return source


def blended_box(record: Dict[str, Any], blend: Any) -> Optional[Box]:
    """Where the Foreground's visible pixels were when ``blend`` was made, by the blend's uid; None if
    not known. Records are not undone by Ctrl+Z but layer additions are, so the box is kept per blend
    layer: an undone re-blend's box must not be taken for the blend that is on top again. An old record
    (one list for the whole group) cannot say which blend it describes: None, a full re-blend."""
    boxes = record.get(BLENDED_AT)
    box = boxes.get(uid(blend)) if isinstance(boxes, dict) else None
    return (box[0], box[1], box[2], box[3]) if isinstance(box, list) and len(box) == 4 else None


def blended_boxes(record: Dict[str, Any], blends: list, new_uid: str, box: Optional[Box]) -> Dict[str, Any]:
    """The record's per-blend boxes after a re-blend: the new blend's, and those of the blend layers
    still in the group (``blends``), so the dict does not grow with every re-blend."""
    old = record.get(BLENDED_AT)
    live = {uid(n) for n in blends}
    kept = {k: v for k, v in old.items() if k in live} if isinstance(old, dict) else {}
    if box is not None:
        kept[new_uid] = list(box)
    return kept


def blend_layers(doc: Any, group: Any) -> list:
    """The group's blend layers, bottom to top: every paint layer in it that is not Foreground,
    Background, Mask or one of the recorded light layers (Shadows, Light of an added object)."""
    keep = {uid(n) for n in (member(doc, group, role) for role in ("foreground", "background", MASK)) if n is not None}
    recorded = read_records(doc).get(uid(group), {}).get("layers", {})
    keep.update(key for role, key in recorded.items() if role != "blend")
    return [n for n in children(group) if uid(n) not in keep and n.type() == "paintlayer"]


def name_blends(doc: Any, group: Any) -> None:
    """The top blend layer is "Blend", the ones beneath it "Blend (previous)" (names only)."""
    blends = blend_layers(doc, group)
    for node, name in zip(blends, [PREVIOUS] * (len(blends) - 1) + [BLEND]):
        if node.name() != name:
            node.setName(name)


class KritaSide(KritaDocuments, CanvasDocuments):
    """The controller's complete document side: insertion (layers.py), canvas jobs (canvas_layers.py)
    and re-blend."""

    def reblend_source(self, doc: Optional[Any] = None, group: Optional[Any] = None) -> ReblendSource:
        doc = doc if doc is not None else self.active()
        group = group if group is not None else find_group(doc)
        if group is None:
            raise UserError("Select a LayerFusion group (or one of its layers) to re-blend.")
        return read_source(doc, group)

    def replace_blend(self, source: ReblendSource, blend: bytes, params: Dict[str, Any]) -> Any:
        doc = source.document
        group = by_uid(doc, source.group_key)
        if group is None:
            raise UserError("The group was deleted while re-blending.")
        t = source.target
        node = doc.createNode(BLEND, "paintlayer")
        write_pixels(node, blend, (t.x, t.y, t.width, t.height))
        for stale in blend_layers(doc, group)[:-1]:
            stale.remove()  # already covered by the current blend: removing it changes nothing visible
        group.addChildNode(node, None)
        name_blends(doc, group)
        records = read_records(doc)
        if source.group_key in records:
            record = records[source.group_key]
            record["reblend_params"] = params
            record[BLENDED_AT] = blended_boxes(record, blend_layers(doc, group), uid(node), source.foreground_box)
            write_records(doc, records)
        doc.refreshProjection()  # asynchronous: the new blend's pixels are not marked dirty otherwise
        return node


class AutoReblend(QObject):
    """Watches the active group's Foreground; re-blends once it has stopped moving for SETTLE_MS.

    Without Fast, a move while a re-blend runs cancels that (now stale) job. With Fast on too (live
    mode), the watcher polls every LIVE_POLL_MS and, while the foreground keeps moving, starts a
    re-blend at most every ``live_interval_ms`` (LiveThrottle: the first one an interval into the
    drag); each new one cancels the one before it (the controller does that, and drops superseded
    results), and the settle re-blend still runs once the drag stops, so the final placement always
    gets its Blend. A document closed mid-drag is let go: its re-blend is cancelled, nothing written.
    """

    def __init__(self, controller: Controller, side: KritaSide) -> None:
        super().__init__(controller)
        self.controller = controller
        self.side = side
        self._seen: Dict[str, Tuple[int, int, int, int]] = {}
        self._moved: Optional[Tuple[Any, Any]] = None  # the dragged group awaiting its settle re-blend
        self._watched: Optional[Tuple[Any, str]] = None  # (document, group key) of the last one re-blended
        self._asked: Dict[str, Box] = {}  # group key -> the Foreground's box its latest re-blend was asked for
        self._throttle = LiveThrottle(Settings().live_interval_ms / 1000.0)
        # Re-blends started during drags (live mode) and once the foreground settled: what a script sees.
        self.live_started = self.settle_started = 0
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self.check)
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(SETTLE_MS)
        self._settle.timeout.connect(self._fire)

    def seen(self, key: str) -> Optional[Tuple[int, int, int, int]]:
        """Where the watcher last saw the Foreground of the group ``key`` (x, y, width, height), if it has."""
        return self._seen.get(key)

    def set_enabled(self, on: bool) -> None:
        if on:
            self._seen.clear()
            self._poll.start()
        else:
            self._poll.stop()
            self._settle.stop()
            self._throttle.stopped()

    def check(self) -> None:
        values = self.controller.panel.values()
        live = values.auto_reblend and values.fast
        self._poll.setInterval(LIVE_POLL_MS if live else POLL_MS)  # a drag is seen while it happens
        self._throttle.interval_s = values.live_interval_ms / 1000.0
        if self._let_go_of_closed():
            return
        try:
            doc = self.side.active()
        except UserError:
            return
        if not self.side.is_open(doc):  # a pinned document (scripts, tests) that was closed
            return
        group = find_group(doc)
        if group is None:
            return
        fg = member(doc, group, "foreground")
        if fg is None:
            return
        name_blends(doc, group)  # after a Ctrl+Z of a re-blend
        b = fg.bounds()
        where = (b.x(), b.y(), b.width(), b.height())
        key = uid(group)
        before = self._seen.get(key)
        self._seen[key] = where
        if before is None or before == where:
            return
        self._moved = (doc, group)
        self._watched = (doc, key)
        self._settle.start()  # restarts the countdown on every move
        if not live:
            self.controller.cancel_reblend(key)
            self._asked.pop(key, None)  # that re-blend will not land: the settle one must run
        elif self._throttle.moved(time.monotonic()):
            self.live_started += 1
            self._start(doc, group)  # the controller cancels the stale one

    def _let_go_of_closed(self) -> bool:
        """Whether the watched document was closed (then its re-blend is cancelled and it is forgotten)."""
        if self._watched is None or self.side.is_open(self._watched[0]):
            return False
        key = self._watched[1]
        busy = self._moved is not None or self.controller.reblend_busy(key)
        self.controller.cancel_reblend(key)
        self._watched = self._moved = None
        self._seen.pop(key, None)
        self._asked.pop(key, None)
        self._settle.stop()
        self._throttle.stopped()
        if busy:
            self.controller.panel.show_message("The document was closed mid-drag: its re-blend was cancelled, "
                                               "nothing was inserted.")
        return True

    def _fire(self) -> None:
        self._throttle.stopped()
        if self._moved is None:
            return
        doc, group = self._moved
        self._moved = None
        key = uid(group)
        if key in self._asked and self._asked[key] == self._seen.get(key):
            return  # the drag's last live re-blend was for this very placement: it is the final one
        self.settle_started += 1
        self._start(doc, group)

    def _start(self, doc: Any, group: Any) -> None:
        if not self.side.is_open(doc) or group.parentNode() is None:
            return
        key = uid(group)
        if key in self._seen:
            self._asked[key] = self._seen[key]
        try:
            self.controller.reblend(read_source(doc, group))
        except UserError as err:
            self.controller.panel.show_error(str(err))
