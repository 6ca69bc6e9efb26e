"""Regenerate blend: read the Foreground as it now lies, and swap in the new Blend (the watcher that
starts one when the Foreground moves is auto_reblend.py).

Krita 5.1 cannot merge two node operations into one undo step, so the new Blend is *added* on top of
the old one (one undo step: Ctrl+Z shows the previous blend again). The old blend stays underneath,
renamed "Blend (previous)" so the group shows one "Blend"; the one before it is removed at the next
re-blend, so a group holds at most two. A rename is no undo step, so after a Ctrl+Z the restored top
blend keeps its "(previous)" name until the group is next read (Regenerate blend, the auto re-blend
watcher), which names the top one "Blend" again.
"""
from typing import Any, Dict, Generator, Optional

from .canvas_layers import CanvasDocuments, pixels_beneath
from .layers import (
    BLENDED_AT,
    KritaDocuments,
    bounds_box,
    by_uid,
    children,
    find_group,
    layer_pixels,
    layer_view,
    member,
    read_records,
    uid,
    write_pixels,
    write_records,
)
from .local_blend import Box, alpha_box, clip, union
from .targets import MASK, Pixels, ReblendSource, Target, UserError

BLEND, PREVIOUS = "Blend", "Blend (previous)"
STRIP_BYTES = 2 << 20  # one step of a drag's prefetch: 256 rows of a 2048-wide layer, about a millisecond


def read_source(doc: Any, group: Any, reuse: Optional[ReblendSource] = None) -> ReblendSource:
    """The group's layers as they now lie. The Foreground is read over its own bounds only. With
    ``reuse`` (an earlier read of this group in the same drag, when nothing but the Foreground can have
    changed), a Background or Blend that is still the same layer at the same bounds is taken from it,
    with its encoded PNG, rather than read again: a live re-blend then reads only the object."""
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
    bx, by, bw, bh = bounds_box(fg)
    fx, fy, fw, fh = at = clip((bx - x, by - y, bw, bh), w, h)
    foreground = layer_pixels(fg, (x + fx, y + fy, fw, fh)) if fw and fh else b""
    seen = alpha_box(foreground, fw, fh)
    source = ReblendSource(doc, uid(group), target, foreground, b"", dict(record.get("params", {})),
                           foreground_box=None if seen is None else (seen[0] + fx, seen[1] + fy, seen[2], seen[3]),
                           foreground_at=at)
    kept = reuse if reuse is not None and reuse.group_key == source.group_key else None

    def read(role: str, node: Any) -> Pixels:
        key = (uid(node), bounds_box(node))
        source.layer_keys[role] = key
        if kept is not None and kept.layer_keys.get(role) == key:
            data = kept.pixels(role)
            if data is not None:
                if role in kept.pngs:
                    source.pngs[role] = kept.pngs[role]
                return data
        return layer_view(node, (x, y, w, h))

    # An added object's background is what lies beneath its group now, the artist's edits included.
    source.background = pixels_beneath(doc, group, (x, y, w, h)) if bg is None else read("background", bg)
    blends = blend_layers(doc, group)
    before = blended_box(record, blends[-1]) if blends else None
    if source.foreground_box is not None and before is not None:
        source.changed = union(before, source.foreground_box)
        source.previous_blend = read("previous_blend", blends[-1])
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

    def replace_steps(self, source: ReblendSource, blend: bytes,
                      params: Dict[str, Any]) -> Generator[None, None, Any]:
        """Put the new Blend on top, one of Krita's costly calls per step (on a 2048² canvas each takes
        tens of milliseconds: together they would stall a drag); returns the new layer. Afterwards the
        source holds that Blend as its previous one, so the drag's next read takes it over."""
        doc = source.document
        t = source.target
        node = doc.createNode(BLEND, "paintlayer")
        write_pixels(node, blend, (t.x, t.y, t.width, t.height))  # detached: nothing in the document yet
        yield
        group = self._group(source)
        for stale in blend_layers(doc, group)[:-1]:
            stale.remove()  # already covered by the current blend: removing it changes nothing visible
        yield
        group = self._group(source)
        group.addChildNode(node, None)
        yield
        if not self.is_open(doc):
            return node
        name_blends(doc, group)
        records = read_records(doc)
        if source.group_key in records:
            record = records[source.group_key]
            record["reblend_params"] = params
            record[BLENDED_AT] = blended_boxes(record, blend_layers(doc, group), uid(node), source.foreground_box)
            write_records(doc, records)
        doc.refreshProjection()  # asynchronous: the new blend's pixels are not marked dirty otherwise
        source.previous_blend, source.layer_keys["previous_blend"] = blend, (uid(node), bounds_box(node))
        source.pngs.pop("previous_blend", None)
        return node

    def prefetch_steps(self, doc: Any, group: Any) -> Generator[None, None, Optional[ReblendSource]]:
        """The group's Background and Blend read a strip at a time (a step each), as an earlier read of
        the drag that ``read_source`` takes over: started when a drag begins, it lets the drag's first
        live re-blend read only the Foreground too. A layer gone or moved meanwhile is left out."""
        record = read_records(doc).get(uid(group))
        bg = member(doc, group, "background")
        if record is None or record.get("kind") == "add_foreground" or bg is None:
            return None  # an added object's background is the canvas beneath: read whole, when asked
        x, y, w, h = record["rect"]
        kept = ReblendSource(doc, uid(group), Target(doc, x, y, w, h, *record["generation_size"]), b"", b"", {})
        blends = blend_layers(doc, group)
        rows = max(1, STRIP_BYTES // (w * 4))
        for role, node in (("background", bg), ("previous_blend", blends[-1] if blends else None)):
            if node is None:
                continue
            key = (uid(node), bounds_box(node))
            pixels = bytearray(w * h * 4)
            for top in range(0, h, rows):
                yield
                if not self.is_open(doc) or node.parentNode() is None:
                    return kept
                n = min(rows, h - top)
                pixels[top * w * 4:(top + n) * w * 4] = layer_view(node, (x, y + top, w, n))
            if (uid(node), bounds_box(node)) != key:
                continue
            kept.layer_keys[role] = key
            if role == "background":
                kept.background = memoryview(pixels).toreadonly()
            else:
                kept.previous_blend = memoryview(pixels).toreadonly()
        return kept

    def _group(self, source: ReblendSource) -> Any:
        if not self.is_open(source.document):
            raise UserError("the document was closed")
        group = by_uid(source.document, source.group_key)
        if group is None:
            raise UserError("the group was deleted while re-blending")
        return group
