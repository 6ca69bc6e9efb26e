"""The Krita side of the canvas jobs: reading the artist's layers, and placing the results around them.

The artist's layers are only read, never written, moved or re-parented. What a job brings goes in as
new nodes built completely (pixels, blend modes, names) before the first one is inserted; if an
insertion fails, the ones already in are removed again.

- *Add object as layer*: one group on top of the layer stack, one undo step::

      LayerFusion object: <prompt> · seed N      (pass-through when the blend comes as layers)
        Shadows  (multiply)      | only with
        Light    (screen)        | "Blend as layers"
        Object   (group)         |
          Foreground
          Foreground shadows (multiply, inherit alpha)
          Foreground light   (screen, inherit alpha)
        Blend                    (hidden when the blend comes as layers)

  Without "Blend as layers" the group holds just Foreground and Blend. It is recorded like a
  generated group (layers.py), so Regenerate blend and Select foreground find it; its re-blend reads
  the canvas beneath the group as it is then.
- *Generate background for layer*: "Background" directly beneath the artist's layer and "Blend"
  directly above it (two insertions, two undo steps). With "Blend as layers" they are a group
  "LayerFusion background" (Background, Shadows, Light) beneath and a pass-through group "LayerFusion
  blend" (Foreground shadows, Foreground light, hidden Blend) above.
- *Harmonize selected layers*: "Blend" directly above the top selected layer. With "Blend as layers":
  a pass-through group "LayerFusion light" (Shadows, Light) directly above the background, and above
  each selected layer a pass-through group "LayerFusion light: <layer>" with its Foreground shadows and
  light (the top one also holding the hidden Blend): one undo step per insertion.

The artist's layers cannot be moved into a group of ours, so where the foreground pair goes next to
an artist's layer (the last two kinds) it is not clipped with inherit alpha but carries that layer's
alpha, copied when the result arrives.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

from krita import Krita  # type: ignore[import-not-found]

from .canvas_jobs import (
    Box,
    CanvasSource,
    LayerFacts,
    foreground_problem,
    harmonize_plan,
    layer_window,
    object_window,
)
from .layers import children, read_records, uid, write_records
from .qt import QByteArray
from .targets import UserError

BLEND_LIGHT = (("shadows", "Shadows", "multiply"), ("light", "Light", "screen"))
FOREGROUND_LIGHT = (("foreground_shadows", "Foreground shadows", "multiply"),
                    ("foreground_light", "Foreground light", "screen"))


# ---- reading ---------------------------------------------------------------------------------
def stack(doc: Any) -> List[Any]:
    """Every layer bottom to top, a group before its children (masks and the root left out)."""
    out: List[Any] = []

    def walk(parent: Any) -> None:
        for node in children(parent):
            if node.type().endswith("mask"):
                continue
            out.append(node)
            if node.type() == "grouplayer":
                walk(node)

    walk(doc.rootNode())
    return out


def ancestors(node: Any) -> List[Any]:
    out = []
    parent = node.parentNode()
    while parent is not None:
        out.append(parent)
        parent = parent.parentNode()
    return out


def at_and_above(doc: Any, node: Any) -> List[Any]:
    """``node`` and every layer painted over it (its own groups excepted: they hold what is beneath)."""
    order = [uid(n) for n in stack(doc)]
    mine = uid(node)
    skip = {uid(n) for n in ancestors(node)}
    start = order.index(mine)
    return [n for n in stack(doc)[start:] if uid(n) not in skip]


def pixels_beneath(doc: Any, node: Any, box: Box) -> bytes:
    """The picture of everything beneath ``node`` over ``box``, as Krita renders it (BGRA).

    Krita 5.1 offers no partial projection, so ``node`` and what lies over it are hidden for one
    render and shown again (visibility changes are no undo steps)."""
    hidden = [n for n in at_and_above(doc, node) if n.visible()]
    for n in hidden:
        n.setVisible(False)
    try:
        doc.refreshProjection()
        doc.waitForDone()
        data = bytes(doc.pixelData(*box))
    finally:
        for n in hidden:
            n.setVisible(True)
        doc.refreshProjection()
    return data


def selection_box(doc: Any) -> Optional[Box]:
    selection = doc.selection()
    if selection is None:
        return None
    return selection.x(), selection.y(), selection.width(), selection.height()


def facts_of(node: Any, box: Box, index: int) -> LayerFacts:
    alpha = bytes(node.pixelData(*box))[3::4] if node.type() == "paintlayer" else b""
    return LayerFacts(node, node.name(), node.type(), index, alpha.count(0) != len(alpha),
                      alpha.count(255) != len(alpha))


def slot_below(node: Any) -> Tuple[Any, Any]:
    """(parent, sibling) such that ``parent.addChildNode(x, sibling)`` puts x directly beneath ``node``
    (or beneath the group holding it, where it is the lowest of its group)."""
    walk = node
    while True:
        parent = walk.parentNode()
        siblings = children(parent)
        index = [uid(n) for n in siblings].index(uid(walk))
        if index > 0:
            return parent, siblings[index - 1]
        if parent.parentNode() is None:
            raise UserError("“%s” is the lowest layer: Krita's scripting cannot insert beneath it. Add any "
                            "layer beneath it first (the new Background goes above that one)." % node.name())
        walk = parent


def selected_nodes(doc: Any) -> List[Any]:
    window = Krita.instance().activeWindow()
    view = window.activeView() if window is not None else None
    if view is not None and view.document() == doc:
        return list(view.selectedNodes())
    return [doc.activeNode()] if doc.activeNode() is not None else []


# ---- building and inserting --------------------------------------------------------------------
def _layer(doc: Any, name: str, data: bytes, box: Box, mode: str = "normal", visible: bool = True,
           inherit: bool = False) -> Any:
    node = doc.createNode(name, "paintlayer")
    node.setPixelData(QByteArray(data), *box)
    if mode != "normal":
        node.setBlendingMode(mode)
    node.setVisible(visible)
    if inherit:
        node.setInheritAlpha(True)
    return node


def _with_alpha(data: bytes, alpha: bytes) -> bytes:
    out = bytearray(data)
    out[3::4] = alpha
    return bytes(out)


def _insert_all(placements: Sequence[Tuple[Any, Any, Any]]) -> None:
    """(parent, node, sibling-beneath-it) in order; all or none."""
    done: List[Any] = []
    try:
        for parent, node, beneath in placements:
            parent.addChildNode(node, beneath)
            done.append(node)
    except Exception:
        for node in reversed(done):
            node.remove()
        raise


def _seed(params: Dict[str, Any]) -> str:
    return "%s" % params.get("seed", "?")


def _short(text: Any) -> str:
    return " ".join(str(text or "").split())[:40]


class CanvasDocuments:
    """The document side of the canvas jobs (mixed into reblend.KritaSide)."""

    def canvas_source(self, kind: str, target_pixels: int, blend_layers: bool,
                      nodes: Optional[Sequence[Any]] = None) -> CanvasSource:
        doc = self.active()  # type: ignore[attr-defined]
        if doc.colorModel() != "RGBA" or doc.colorDepth() != "U8":
            raise UserError("LayerFusion needs an 8-bit RGBA document (this one is %s %s)."
                            % (doc.colorModel(), doc.colorDepth()))
        sel = selection_box(doc)
        if kind == "add_foreground":
            window = object_window(doc.width(), doc.height(), sel, target_pixels)
            doc.waitForDone()
            canvas = bytes(doc.pixelData(*window.box))
            return CanvasSource(kind, doc, window, [("background", canvas, False, "")], None, blend_layers)
        window = layer_window(doc.width(), doc.height(), sel, target_pixels)
        order = {uid(n): i for i, n in enumerate(stack(doc))}
        picked = list(nodes) if nodes is not None else selected_nodes(doc)
        if kind == "add_background":
            if len(picked) != 1:
                raise UserError("Select one layer to generate a background for (the object's layer).")
            facts = facts_of(picked[0], window.box, order.get(uid(picked[0]), 0))
            problem = foreground_problem(facts)
            if problem:
                raise UserError(problem)
            slot_below(picked[0])  # refuse now, not when the result arrives
            data = bytes(picked[0].pixelData(*window.box))
            return CanvasSource(kind, doc, window, [("foreground", data, True, facts.name)], picked[0], blend_layers)
        facts = [facts_of(n, window.box, order.get(uid(n), 0)) for n in picked]
        beneath: Optional[bytes] = None
        lowest = min(facts, key=lambda f: f.stack_index) if facts else None
        if lowest is not None and lowest.has_transparent and lowest.node_type == "paintlayer":
            beneath = pixels_beneath(doc, lowest.key, window.box)
        plan = harmonize_plan(facts, beneath is not None and beneath[3::4].count(0) != len(beneath) // 4)
        background = beneath if plan.background is None else bytes(plan.background.key.pixelData(*window.box))
        uploads = [("background", background or b"", False, "")]
        uploads += [("foreground", bytes(f.key.pixelData(*window.box)), True, f.name) for f in plan.foregrounds]
        return CanvasSource(kind, doc, window, uploads, plan, blend_layers)

    def insert_canvas(self, source: CanvasSource, layers: Dict[str, bytes], params: Dict[str, Any],
                      job_id: str) -> Any:
        """Place a finished canvas job's layers (BGRA at the window's size); returns the new nodes."""
        doc = source.document
        if not self.is_open(doc):  # type: ignore[attr-defined]
            raise UserError("The document was closed before the layers could go in.")
        want = {"add_foreground": ("foreground", "blend"), "add_background": ("background", "blend"),
                "harmonize": ("blend",)}[source.kind]
        want += tuple(role for role, _n, _m in BLEND_LIGHT + FOREGROUND_LIGHT) if source.blend_layers else ()
        missing = [name for name in want if name not in layers]
        if missing:
            raise UserError("The server's result lacks %s." % ", ".join(missing))
        insert = {"add_foreground": self._insert_object, "add_background": self._insert_background,
                  "harmonize": self._insert_harmonized}[source.kind]
        nodes = insert(source, layers, params, job_id)
        doc.refreshProjection()  # Krita 5.1 does not mark inserted pixels dirty
        return nodes

    def _insert_object(self, source: CanvasSource, layers: Dict[str, bytes], params: Dict[str, Any],
                       job_id: str) -> Any:
        doc, w, split = source.document, source.window, source.blend_layers
        box = w.box
        group = doc.createGroupLayer("LayerFusion object: %s · seed %s" % (_short(params.get("foreground_prompt")),
                                                                          _seed(params)))
        ids: Dict[str, str] = {}
        holder = group
        if split:
            group.setPassThroughMode(True)  # Shadows and Light act on the canvas beneath the group
            for role, name, mode in BLEND_LIGHT:
                node = _layer(doc, name, layers[role], box, mode)
                group.addChildNode(node, None)
                ids[role] = uid(node)
            holder = doc.createGroupLayer("Object")  # the clipping group: inherit alpha clips to the Foreground
        fg = _layer(doc, "Foreground", layers["foreground"], box)
        holder.addChildNode(fg, None)
        ids["foreground"] = uid(fg)
        if split:
            for role, name, mode in FOREGROUND_LIGHT:
                node = _layer(doc, name, layers[role], box, mode, inherit=True)
                holder.addChildNode(node, None)
                ids[role] = uid(node)
            group.addChildNode(holder, None)
            ids["object"] = uid(holder)
        blend = _layer(doc, "Blend", layers["blend"], box, visible=not split)
        group.addChildNode(blend, None)
        ids["blend"] = uid(blend)
        records = read_records(doc)
        before = dict(records)
        records[uid(group)] = {"kind": "add_foreground", "job_id": job_id, "params": params, "rect": list(box),
                               "generation_size": [w.gen_width, w.gen_height], "layers": ids}
        try:
            write_records(doc, records)
            doc.rootNode().addChildNode(group, None)  # on top: over everything the canvas showed
        except Exception:
            write_records(doc, before)
            if group.parentNode() is not None:
                group.remove()
            raise
        doc.setActiveNode(fg)
        return [group]

    def _foreground_pair(self, doc: Any, layers: Dict[str, bytes], box: Box, node: Any) -> List[Any]:
        alpha = bytes(node.pixelData(*box))[3::4]
        return [_layer(doc, name, _with_alpha(layers[role], alpha), box, mode) for role, name, mode in FOREGROUND_LIGHT]

    def _insert_background(self, source: CanvasSource, layers: Dict[str, bytes], params: Dict[str, Any],
                           job_id: str) -> Any:
        doc, box, node = source.document, source.window.box, source.anchor
        if node.parentNode() is None:
            raise UserError("The layer “%s” was deleted while its background was made." % node.name())
        parent, beneath = slot_below(node)
        split = source.blend_layers
        background = _layer(doc, "Background", layers["background"], box)
        blend = _layer(doc, "Blend", layers["blend"], box, visible=not split)
        under, over = background, blend
        if split:
            under = doc.createGroupLayer("LayerFusion background: %s · seed %s"
                                         % (_short(params.get("background_prompt")), _seed(params)))
            under.addChildNode(background, None)
            for role, name, mode in BLEND_LIGHT:
                under.addChildNode(_layer(doc, name, layers[role], box, mode), None)
            over = doc.createGroupLayer("LayerFusion blend")
            over.setPassThroughMode(True)
            for pair in self._foreground_pair(doc, layers, box, node):
                over.addChildNode(pair, None)
            over.addChildNode(blend, None)
        _insert_all([(parent, under, beneath), (node.parentNode(), over, node)])
        return [under, over]

    def _insert_harmonized(self, source: CanvasSource, layers: Dict[str, bytes], params: Dict[str, Any],
                           job_id: str) -> Any:
        doc, box, plan = source.document, source.window.box, source.anchor
        fgs = [f.key for f in plan.foregrounds]
        if any(n.parentNode() is None for n in fgs):
            raise UserError("A selected layer was deleted while harmonizing.")
        top = fgs[-1]
        blend = _layer(doc, "Blend", layers["blend"], box, visible=not source.blend_layers)
        if not source.blend_layers:
            _insert_all([(top.parentNode(), blend, top)])
            return [blend]
        light = doc.createGroupLayer("LayerFusion light")
        light.setPassThroughMode(True)
        for role, name, mode in BLEND_LIGHT:
            light.addChildNode(_layer(doc, name, layers[role], box, mode), None)
        if plan.background is not None:  # directly over the background layer
            parent, beneath = plan.background.key.parentNode(), plan.background.key
        else:  # directly beneath the lowest selected layer, over what lies there
            parent, beneath = slot_below(plan.lowest.key)
        placements = [(parent, light, beneath)]
        for node in fgs:
            pair = doc.createGroupLayer("LayerFusion light: %s" % _short(node.name()))
            pair.setPassThroughMode(True)
            for layer in self._foreground_pair(doc, layers, box, node):
                pair.addChildNode(layer, None)
            if uid(node) == uid(top):
                pair.addChildNode(blend, None)
            placements.append((node.parentNode(), pair, node))
        _insert_all(placements)
        return [p[1] for p in placements]
