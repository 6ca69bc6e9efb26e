"""Regenerate blend: read the Foreground as it now lies, and swap in the new Blend; plus auto re-blend.

Krita 5.1 cannot merge two node operations into one undo step, so the new Blend is *added* on top of
the old one (one undo step: Ctrl+Z shows the previous blend again). The old blend stays underneath,
renamed "Blend (previous)" so the group shows one "Blend"; the one before it is removed at the next
re-blend, so a group holds at most two. A rename is no undo step, so after a Ctrl+Z the restored top
blend keeps its "(previous)" name until the group is next read (Regenerate blend, the auto re-blend
watcher), which names the top one "Blend" again.
Krita emits no signal when a layer moves, hence the polling watcher below.
"""
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
from .local_blend import alpha_box, union
from .qt import QObject, QTimer
from .targets import MASK, ReblendSource, Target, UserError

BLEND, PREVIOUS = "Blend", "Blend (previous)"
POLL_MS = 250
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
    blends, before = blend_layers(doc, group), record.get(BLENDED_AT)
    if source.foreground_box is not None and blends and isinstance(before, list) and len(before) == 4:
        source.changed = union(tuple(before), source.foreground_box)
        source.previous_blend = layer_pixels(blends[-1], (x, y, w, h))
    return source


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
            records[source.group_key]["reblend_params"] = params
            records[source.group_key][BLENDED_AT] = list(source.foreground_box) if source.foreground_box else None
            write_records(doc, records)
        doc.refreshProjection()  # asynchronous: the new blend's pixels are not marked dirty otherwise
        return node


class AutoReblend(QObject):
    """Watches the active group's Foreground; re-blends once it has stopped moving for SETTLE_MS.

    A move while a re-blend runs cancels that (now stale) job; the controller does the cancelling
    when a new re-blend for the same group starts.
    """

    def __init__(self, controller: Controller, side: KritaSide) -> None:
        super().__init__(controller)
        self.controller = controller
        self.side = side
        self._seen: Dict[str, Tuple[int, int, int, int]] = {}
        self._moved: Optional[Tuple[Any, Any]] = None
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self.check)
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(SETTLE_MS)
        self._settle.timeout.connect(self._fire)

    def set_enabled(self, on: bool) -> None:
        if on:
            self._seen.clear()
            self._poll.start()
        else:
            self._poll.stop()
            self._settle.stop()

    def check(self) -> None:
        try:
            doc = self.side.active()
            group = find_group(doc)
        except UserError:
            return
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
        if before is not None and before != where:
            self.controller.cancel_reblend(key)
            self._moved = (doc, group)
            self._settle.start()  # restarts the countdown on every move

    def _fire(self) -> None:
        if self._moved is None:
            return
        doc, group = self._moved
        self._moved = None
        if not self.side.is_open(doc) or group.parentNode() is None:
            return
        try:
            self.controller.reblend(read_source(doc, group))
        except UserError as err:
            self.controller.panel.show_error(str(err))
