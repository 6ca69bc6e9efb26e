"""The Krita side of the canvas jobs: reading the artist's layers, and placing the results over them.

The artist's layers are only read, never written, moved or re-parented. Every result goes in as one
new group, built completely (pixels, blend modes, names) while detached and then added once: one
undo step, and nothing half-inserted when that fails. Krita 5.1 has no undo macro, so where the
result has to wrap around an artist's layer (a Background beneath it, a Blend or light over it), the
group holds a *clone layer* of it instead: the clone shows that layer as it is and as it changes, the
layer itself stays where it was, under the group. Hiding the group shows the document as it was.

- *Add object as layer*: on top of the layer stack, over the canvas (pass-through with "Blend as
  layers", so Shadows and Light act on the canvas beneath)::

      LayerFusion object: <prompt> · seed N
        Shadows  (multiply)      | only with
        Light    (screen)        | "Blend as layers"
        Object   (group)         |
          Foreground
          Foreground shadows (multiply, inherit alpha)
          Foreground light   (screen, inherit alpha)
        Blend                    (hidden when the blend comes as layers)

  Without "Blend as layers" the group holds just Foreground and Blend. Its re-blend reads the canvas
  beneath the group as it is then.
- *Generate background for layer*: directly over the artist's layer, "LayerFusion background:
  <prompt> · seed N" holding Background, (Shadows, Light,) a clone of the layer (in "Object" with
  its light pair when split) and Blend: the shape of a generated group, so moving the clone and
  Regenerate blend work as there.
- *Harmonize selected layers*: "Blend" directly above the top selected layer. With "Blend as layers"
  the light splits around every layer, so one group "LayerFusion harmonized · seed N" over the top
  layer rebuilds the stack: the background (a clone of the selected background layer, or the canvas
  beneath as it was harmonized, "Canvas beneath"), Shadows, Light, clones of the layers in "Object"
  with the light pair clipped to them, and the hidden Blend. Unselected layers between the selected
  ones are covered by it.

Add object and Generate background groups (and a harmonized group of one layer) are recorded like
generated ones (layers.py), so Regenerate blend and Select foreground find them.
"""
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

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
from .layers import children, layer_pixels, read_records, uid, write_pixels, write_records, write_visible
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
    alpha = layer_pixels(node, box)[3::4] if node.type() == "paintlayer" else b""
    return LayerFacts(node, node.name(), node.type(), index, alpha.count(0) != len(alpha),
                      alpha.count(255) != len(alpha))


def selected_nodes(doc: Any) -> List[Any]:
    window = Krita.instance().activeWindow()
    view = window.activeView() if window is not None else None
    if view is not None and view.document() == doc:
        return list(view.selectedNodes())
    return [doc.activeNode()] if doc.activeNode() is not None else []


# ---- building and inserting --------------------------------------------------------------------
def _layer(doc: Any, name: str, data: bytes, box: Box, mode: str = "normal", visible: bool = True,
           inherit: bool = False, write: Callable[[Any, bytes, Box], None] = write_pixels) -> Any:
    node = doc.createNode(name, "paintlayer")
    write(node, data, box)
    if mode != "normal":
        node.setBlendingMode(mode)
    node.setVisible(visible)
    if inherit:
        node.setInheritAlpha(True)
    return node


def _clone(doc: Any, source: Any) -> Any:
    """A clone layer of the artist's ``source``: it shows that layer as it is now and as it changes
    (painted on, moved), and moves on its own when moved itself; the source is never touched."""
    return doc.createCloneLayer("%s (clone)" % source.name(), source)


def _result_group(doc: Any, name: str, layers: Dict[str, bytes], box: Box, split: bool,
                  foregrounds: Sequence[Any], background: Optional[Any] = None) -> Tuple[Any, Dict[str, str]]:
    """One detached group holding a canvas job's result over ``background`` (a node, or None where
    the group lies over the artist's canvas) and ``foregrounds`` (nodes, bottom first)::

        <name>
          background             (if given)
          Shadows  (multiply)    | with "Blend as layers"
          Light    (screen)      |
          Object   (group)       | the foregrounds in a sub-group, so inherit alpha
            <foregrounds>        | clips the pair to all of them at once
            Foreground shadows (multiply, inherit alpha)
            Foreground light   (screen, inherit alpha)
          Blend                  (hidden with "Blend as layers")

    Returns the group and the recorded ids by role ("foreground" is the lowest foreground)."""
    group = doc.createGroupLayer(name)
    ids: Dict[str, str] = {}
    if background is not None:
        group.addChildNode(background, None)
        ids["background"] = uid(background)
    holder = group
    if split:
        for role, title, mode in BLEND_LIGHT:
            node = _layer(doc, title, layers[role], box, mode)
            group.addChildNode(node, None)
            ids[role] = uid(node)
        holder = doc.createGroupLayer("Object")
    for node in foregrounds:
        holder.addChildNode(node, None)
    ids["foreground"] = uid(foregrounds[0])
    if split:
        for role, title, mode in FOREGROUND_LIGHT:
            node = _layer(doc, title, layers[role], box, mode, inherit=True)
            holder.addChildNode(node, None)
            ids[role] = uid(node)
        group.addChildNode(holder, None)
        ids["object"] = uid(holder)
    blend = _layer(doc, "Blend", layers["blend"], box, visible=not split)
    group.addChildNode(blend, None)
    ids["blend"] = uid(blend)
    return group, ids


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
            data = layer_pixels(picked[0], window.box)
            return CanvasSource(kind, doc, window, [("foreground", data, True, facts.name)], picked[0], blend_layers)
        facts = [facts_of(n, window.box, order.get(uid(n), 0)) for n in picked]
        beneath: Optional[bytes] = None
        lowest = min(facts, key=lambda f: f.stack_index) if facts else None
        if lowest is not None and lowest.has_transparent and lowest.node_type == "paintlayer":
            beneath = pixels_beneath(doc, lowest.key, window.box)
        plan = harmonize_plan(facts, beneath is not None and beneath[3::4].count(0) != len(beneath) // 4)
        background = beneath if plan.background is None else layer_pixels(plan.background.key, window.box)
        uploads = [("background", background or b"", False, "")]
        uploads += [("foreground", layer_pixels(f.key, window.box), True, f.name) for f in plan.foregrounds]
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
        doc, box = source.document, source.window.box
        fg = _layer(doc, "Foreground", layers["foreground"], box, write=write_visible)
        group, ids = _result_group(doc, "LayerFusion object: %s · seed %s"
                                   % (_short(params.get("foreground_prompt")), _seed(params)),
                                   layers, box, source.blend_layers, [fg])
        if source.blend_layers:
            group.setPassThroughMode(True)  # Shadows and Light act on the canvas beneath the group
        self._add_recorded(source, group, ids, params, job_id, doc.rootNode(), None)  # on top of everything
        doc.setActiveNode(fg)
        return [group]

    def _insert_background(self, source: CanvasSource, layers: Dict[str, bytes], params: Dict[str, Any],
                           job_id: str) -> Any:
        doc, box, node = source.document, source.window.box, source.anchor
        if node.parentNode() is None:
            raise UserError("The layer “%s” was deleted while its background was made." % node.name())
        fg = _clone(doc, node)
        group, ids = _result_group(doc, "LayerFusion background: %s · seed %s"
                                   % (_short(params.get("background_prompt")), _seed(params)),
                                   layers, box, source.blend_layers, [fg],
                                   _layer(doc, "Background", layers["background"], box))
        self._add_recorded(source, group, ids, params, job_id, node.parentNode(), node)
        doc.setActiveNode(fg)  # moving it and re-blending works as in a generated group
        return [group]

    def _insert_harmonized(self, source: CanvasSource, layers: Dict[str, bytes], params: Dict[str, Any],
                           job_id: str) -> Any:
        doc, box, plan = source.document, source.window.box, source.anchor
        nodes = [f.key for f in plan.foregrounds]
        if any(n.parentNode() is None for n in nodes) or (
                plan.background is not None and plan.background.key.parentNode() is None):
            raise UserError("A selected layer was deleted while harmonizing.")
        top = nodes[-1]
        if not source.blend_layers:
            blend = _layer(doc, "Blend", layers["blend"], box)
            top.parentNode().addChildNode(blend, top)
            return [blend]
        # The light splits around each layer: the whole stack is rebuilt in one group over the top
        # layer, from clones of the artist's layers, so it goes in (and out) in one step.
        if plan.background is not None:
            background = _clone(doc, plan.background.key)
        else:  # what lay beneath, as it was harmonized
            background = _layer(doc, "Canvas beneath", source.uploads[0][1], box)
        group, ids = _result_group(doc, "LayerFusion harmonized · seed %s" % _seed(params), layers, box, True,
                                   [_clone(doc, n) for n in nodes], background)
        if len(nodes) > 1:  # a re-blend takes one foreground: only a single layer's group is recorded
            top.parentNode().addChildNode(group, top)
        else:
            self._add_recorded(source, group, ids, params, job_id, top.parentNode(), top)
        return [group]

    def _add_recorded(self, source: CanvasSource, group: Any, ids: Dict[str, str], params: Dict[str, Any],
                      job_id: str, parent: Any, beneath: Any) -> None:
        """Insert ``group`` (one undo step) and record it like a generated group, so Regenerate blend
        and Select foreground find it; on failure neither stays."""
        doc, w = source.document, source.window
        records = read_records(doc)
        before = dict(records)
        records[uid(group)] = {"kind": source.kind, "job_id": job_id, "params": params, "rect": list(w.box),
                               "generation_size": [w.gen_width, w.gen_height], "layers": ids}
        try:
            write_records(doc, records)
            parent.addChildNode(group, beneath)
        except Exception:
            write_records(doc, before)
            if group.parentNode() is not None:
                group.remove()
            raise
