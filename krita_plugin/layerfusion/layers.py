"""The thin Krita adapter: where a job's layers go and how they are put into a document.

Everything here runs on the UI thread and touches Krita's objects; pixels arrive already decoded
(BGRA bytes), so the work is copying bytes and one node insertion. Krita 5.1 has no Python undo
macro, but a detached group layer filled with its children and then added once is a single undo
step (KRITA.md) — that is how the triplet goes in, and why nothing is half-inserted on failure.
"""
import json
from typing import Any, Dict, Iterator, List, Optional, Tuple

from krita import Krita, Selection  # type: ignore[import-not-found]

from .local_blend import alpha_box, crop
from .qt import QByteArray, QRect, QUuid
from .targets import CLIPPED, LAYER_STACK, LIGHT_MODES, Target, UserError, layer_plan
from .wire import sizes

ANNOTATION = "layerfusion"  # one JSON document annotation: group uid -> what was generated there
BLENDED_AT = "blended_at"  # record key: {blend layer uid: the Foreground's visible box (group pixels) it was made for}
LAYER_NAMES = tuple((role, name) for role, name, _visible in LAYER_STACK)  # role -> layer name


def uid(node: Any) -> str:
    return node.uniqueId().toString()


def group_name(params: Dict[str, Any]) -> str:
    fg = " ".join(str(params.get("foreground_prompt", "")).split())[:40]
    bg = " ".join(str(params.get("background_prompt", "")).split())[:40]
    return "LayerFusion: %s / %s · seed %s" % (fg, bg, params.get("seed", "?"))


# ---- the record of generated groups, kept in the document (survives saving as .kra) -----------
def read_records(doc: Any) -> Dict[str, Any]:
    try:
        raw = bytes(doc.annotation(ANNOTATION))
        data = json.loads(raw.decode("utf-8")) if raw else {}
    except (ValueError, TypeError):
        data = {}
    groups = data.get("groups") if isinstance(data, dict) else None
    return groups if isinstance(groups, dict) else {}


def write_records(doc: Any, groups: Dict[str, Any]) -> None:
    payload = json.dumps({"version": 1, "groups": groups}).encode("utf-8")
    doc.setAnnotation(ANNOTATION, "LayerFusion generation parameters", QByteArray(payload))


def layer_pixels(node: Any, box: Tuple[int, int, int, int]) -> bytes:
    """A layer's pixels over ``box`` (image coordinates, whatever its offset: the layer as it lies).
    A clone layer has no pixels of its own: what it shows is its projection."""
    return bytes(layer_view(node, box))


def layer_view(node: Any, box: Tuple[int, int, int, int]) -> memoryview:
    """``layer_pixels`` without the copy into ``bytes``: a view of the buffer Krita filled (it keeps it
    alive). A whole 2048² layer is 16 MB, and copying it cost the UI thread more than reading it."""
    return memoryview(node.projectionPixelData(*box) if node.type() == "clonelayer" else node.pixelData(*box))


def write_visible(node: Any, data: bytes, box: Tuple[int, int, int, int]) -> Optional[Tuple[int, int, int, int]]:
    """``write_pixels`` of only the part of ``data`` with alpha > 0, which it returns (relative to
    ``box``; None: nothing visible). Krita stores the tiles a layer is written over, transparent or not,
    and ``bounds()`` scans them for visible pixels anew after every move: 45 ms per poll of a dragged
    2048² Foreground written whole, nothing written this way."""
    x, y, w, h = box
    seen = alpha_box(data, w, h)
    if seen is not None:
        write_pixels(node, crop(data, w, seen), (x + seen[0], y + seen[1], seen[2], seen[3]))
    return seen


def bounds_box(node: Any) -> Tuple[int, int, int, int]:
    """A layer's bounds in image coordinates (x, y, width, height): where its pixels can be."""
    b = node.bounds()
    return b.x(), b.y(), b.width(), b.height()


def write_pixels(node: Any, data: bytes, box: Tuple[int, int, int, int]) -> None:
    """Fill a new, detached layer. Krita 5.2+ answers False when it could not (5.1 answers nothing)."""
    if node.setPixelData(QByteArray(data), *box) is False:
        raise UserError("Krita refused the pixels of the layer “%s” (%d×%d at %d, %d)."
                        % (node.name(), box[2], box[3], box[0], box[1]))


def children(node: Any) -> List[Any]:
    return list(node.childNodes())


def find_group(doc: Any, node: Optional[Any] = None) -> Optional[Any]:
    """The generated group holding ``node`` (or the active node); else the newest one still present."""
    records = read_records(doc)
    node = node if node is not None else doc.activeNode()
    while node is not None:
        if uid(node) in records:
            return node
        node = node.parentNode()
    for key in reversed(list(records)):
        group = by_uid(doc, key)
        if group is not None:
            return group
    return None


def by_uid(doc: Any, key: str) -> Optional[Any]:
    node = doc.nodeByUniqueID(QUuid(key))
    # nodeByUniqueID hands back nodes removed from the tree too (kept for undo): demand a parent.
    if node is None or node.parentNode() is None:
        return None
    return node


def descendants(node: Any) -> Iterator[Any]:
    """The layers inside ``node``, a group's before the next sibling (an add-object group nests one)."""
    for child in children(node):
        yield child
        if child.type() == "grouplayer":
            yield from descendants(child)


def member(doc: Any, group: Any, role: str) -> Optional[Any]:
    """The group's Foreground / Background by recorded id, else by name (a copied group, say)."""
    record = read_records(doc).get(uid(group), {})
    ids = record.get("layers", {})
    for child in descendants(group):
        if ids.get(role) == uid(child):
            return child
    wanted = dict(LAYER_NAMES).get(role)
    for child in descendants(group):
        if child.name() == wanted:
            return child
    return None


# ---- the document side the controller drives -----------------------------------------------
class KritaDocuments:
    """Implements the controller's document side with Krita's Python API.

    ``document`` pins one document (scripts, kritarunner, which has no active window); by default
    the active view's document is used.
    """

    def __init__(self, document: Optional[Any] = None) -> None:
        self.document = document

    def active(self) -> Any:
        doc = self.document if self.document is not None else Krita.instance().activeDocument()
        if doc is None:
            raise UserError("Open or create a document first.")
        return doc

    def generation_target(self, target_pixels: int, doc: Optional[Any] = None) -> Target:
        doc = doc if doc is not None else self.active()
        x, y, w, h = 0, 0, doc.width(), doc.height()
        selection = doc.selection()
        if selection is not None and selection.width() > 0 and selection.height() > 0:
            x, y, w, h = selection.x(), selection.y(), selection.width(), selection.height()
        gen_w, gen_h = sizes.generation_size(w, h, target_pixels)
        return Target(doc, x, y, w, h, gen_w, gen_h)

    def is_open(self, doc: Any) -> bool:
        return any(doc == other for other in Krita.instance().documents())

    def insert(self, target: Target, layers: Dict[str, bytes], params: Dict[str, Any], job_id: str) -> Any:
        """All at once, then wait for Krita to finish (scripts and tests read the pixels next)."""
        steps = self.insert_steps(target, layers, params, job_id)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                target.document.waitForDone()
                return done.value

    def insert_steps(self, target: Target, layers: Dict[str, bytes], params: Dict[str, Any],
                     job_id: str) -> Iterator[None]:
        """Insert Background, (Mask,) Foreground and Blend in one new group, as one undo step; all or nothing.

        A generator: it yields after each layer's pixels are copied, so the caller can give the event
        loop a turn in between (a 1024² layer costs ~15 ms). The group stays detached, invisible and
        outside the undo history until the single addChildNode at the end.
        """
        doc = target.document
        if doc.colorModel() != "RGBA" or doc.colorDepth() != "U8":
            raise UserError("LayerFusion needs an 8-bit RGBA document (this one is %s %s)."
                            % (doc.colorModel(), doc.colorDepth()))
        if "foreground" not in layers or "background" not in layers:
            raise UserError("The server's result lacks the foreground or the background.")
        group = doc.createGroupLayer(group_name(params))
        ids: Dict[str, str] = {}
        split = "shadows" in layers  # the blend as layers: the Blend goes in hidden
        holder = None  # the "Object" sub-group then
        visible_box = None  # where the Foreground's visible pixels are (write_visible)
        for role, name, visible in layer_plan(layers):
            node = doc.createNode(name, "paintlayer")
            if role in LIGHT_MODES:
                node.setBlendingMode(LIGHT_MODES[role])
                node.setInheritAlpha(role in CLIPPED)
            if split and role in CLIPPED and holder is None:
                holder = doc.createGroupLayer("Object")
                group.addChildNode(holder, None)
                ids["object"] = uid(holder)
            # The Mask arrives as opaque grey (B = G = R = mask, A = 255, how pixels.py decodes a grey
            # PNG), not as white with alpha = mask: shown, it reads as the matte the method made, its
            # values are the PNG's own (no colour lost under zero alpha), and Select foreground already
            # turns the alpha into a selection.
            rect = (target.x, target.y, target.width, target.height)
            if role == "foreground":
                visible_box = write_visible(node, layers[role], rect)
            else:
                write_pixels(node, layers[role], rect)
            node.setVisible(visible and not (split and role == "blend"))
            # appended on top: Background, (Mask,) Foreground, Blend
            (holder if split and role in CLIPPED else group).addChildNode(node, None)
            ids[role] = uid(node)
            yield
        if not self.is_open(doc):
            raise UserError("The document was closed before the layers could go in.")
        records = read_records(doc)
        before = dict(records)
        records[uid(group)] = {
            "job_id": job_id,
            "params": params,
            "rect": [target.x, target.y, target.width, target.height],
            "generation_size": [target.gen_width, target.gen_height],
            "layers": ids,
        }
        if "foreground" in layers and "blend" in layers:
            # per blend layer (reblend.blended_box): an undone re-blend must not lend its box to this one
            records[uid(group)][BLENDED_AT] = {ids["blend"]: list(visible_box)} if visible_box else {}
        root = doc.rootNode()
        active = doc.activeNode()
        top_level = active is not None and active.parentNode() is not None and uid(active.parentNode()) == uid(root)
        try:
            write_records(doc, records)
            root.addChildNode(group, active if top_level else None)
        except Exception:
            write_records(doc, before)
            if group.parentNode() is not None:
                group.remove()
            raise
        doc.setActiveNode(member(doc, group, "foreground") or group)
        # Krita 5.1's addChildNode does not mark the new pixels dirty; this re-renders asynchronously.
        doc.refreshProjection()
        return group

    def select_foreground(self, doc: Optional[Any] = None, node: Optional[Any] = None) -> Any:
        """Set the selection to the alpha of ``foreground_of(doc, node)``; returns that layer."""
        doc = doc if doc is not None else self.active()
        node = foreground_of(doc, node)
        if node is None:
            raise UserError("Select a LayerFusion group (or one of its layers) or a paint layer first.")
        if doc.colorModel() != "RGBA" or doc.colorDepth() != "U8":
            raise UserError("Select foreground needs an 8-bit RGBA document.")
        b = node.bounds().intersected(QRect(0, 0, doc.width(), doc.height()))
        alpha = layer_pixels(node, (b.x(), b.y(), b.width(), b.height()))[3::4] if not b.isEmpty() else b""
        if not any(alpha):
            raise UserError("The layer “%s” has no visible pixels on the canvas to select." % node.name())
        selection = Selection()
        selection.setPixelData(QByteArray(alpha), b.x(), b.y(), b.width(), b.height())
        doc.setSelection(selection)
        return node


def foreground_of(doc: Any, node: Optional[Any] = None) -> Optional[Any]:
    """The Foreground of the LayerFusion group holding ``node`` (default: the active node), if it is
    in one; else ``node`` itself when it is a paint layer; else None."""
    node = node if node is not None else doc.activeNode()
    records = read_records(doc)
    walk = node
    while walk is not None:
        if uid(walk) in records:
            return member(doc, walk, "foreground")
        walk = walk.parentNode()
    return node if node is not None and node.type() == "paintlayer" else None
