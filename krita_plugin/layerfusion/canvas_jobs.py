"""Jobs on the artist's own canvas, without Krita: where they look, which layers they take, what is sent.

Three Tools actions work on what the artist painted rather than generating everything:

- *Add object as layer* (``add_foreground``) sends a window of the visible canvas and gets back a
  transparent Foreground (and a Blend) for that window;
- *Generate background for layer* (``add_background``) sends the active RGBA layer and gets back a
  Background to go beneath it (and a Blend);
- *Harmonize selected layers* (``harmonize``) sends the selected RGBA layers and their background and
  gets back a Blend of them.

The geometry and the choice of layers are plain functions of numbers and :class:`LayerFacts` here, so
they are unit-tested offscreen; canvas_layers.py reads the facts from Krita and places the results.
"""
import math
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .targets import UserError
from .wire import protocol, validated

Box = Tuple[int, int, int, int]  # x, y, width, height


@dataclass
class Window:
    """The document rectangle a canvas job reads and writes, and the size its images are sent at.

    ``target`` is where the object goes, in the *sent* image's pixels (the request's Rect), or None.
    The results come back at ``gen_width`` x ``gen_height`` and are scaled (Qt's smooth, bilinear
    scaling) to ``width`` x ``height`` before they go in at (``x``, ``y``).
    """

    x: int
    y: int
    width: int
    height: int
    gen_width: int
    gen_height: int
    target: Optional[Box] = None

    @property
    def box(self) -> Box:
        return self.x, self.y, self.width, self.height


def _floor8(value: float) -> int:
    return int(value // protocol.SIZE_MULTIPLE) * protocol.SIZE_MULTIPLE


def _ceil8(value: float) -> int:
    return int(math.ceil(value / protocol.SIZE_MULTIPLE)) * protocol.SIZE_MULTIPLE


def _axis(start: int, length: int, doc_length: int) -> Tuple[int, int]:
    """A span of the document: ``start``..``start + length`` grown to a multiple of 8 and at least
    MIN_SIDE around its centre, shifted to stay inside ``0..doc_length`` (and cut to a multiple of 8
    of the document's side where the document is not one)."""
    side = _ceil8(max(length, protocol.MIN_SIDE))
    if side > doc_length:
        side = _floor8(doc_length)
    new_start = start + (length - side) // 2
    return min(max(0, new_start), doc_length - side), side


def _check_document(doc_width: int, doc_height: int) -> None:
    if min(doc_width, doc_height) < protocol.MIN_SIDE:
        raise UserError("The document is %d×%d pixels: LayerFusion needs at least %d×%d."
                        % (doc_width, doc_height, protocol.MIN_SIDE, protocol.MIN_SIDE))


def generation_size(width: int, height: int, target_pixels: int) -> Tuple[int, int]:
    """The size a window's images are sent at: the window scaled, aspect kept, to about
    ``target_pixels`` (the docker's Resolution, as for Generate: the model works best near its own
    size), sides multiples of 8 in MIN_SIDE..MAX_SIDE, at most MAX_PIXELS in all."""
    scale = math.sqrt(max(1, min(target_pixels, protocol.MAX_PIXELS)) / float(width * height))
    scale = min(scale, protocol.MAX_SIDE / float(width), protocol.MAX_SIDE / float(height))
    gen_w = max(protocol.MIN_SIDE, min(protocol.MAX_SIDE, _floor8(width * scale + 4)))
    gen_h = max(protocol.MIN_SIDE, min(protocol.MAX_SIDE, _floor8(height * scale + 4)))
    while gen_w * gen_h > protocol.MAX_PIXELS:  # rounding up may just pass the budget
        if gen_w >= gen_h:
            gen_w -= protocol.SIZE_MULTIPLE
        else:
            gen_h -= protocol.SIZE_MULTIPLE
    return gen_w, gen_h


def object_window(doc_width: int, doc_height: int, selection: Optional[Box], target_pixels: int) -> Window:
    """The window *Add object as layer* generates in, and the object's target inside it.

    With a selection: its bounding box plus context of **half the box's longer side on every side**
    (the model sees what surrounds the object), cut to the document, then each side grown to a
    multiple of 8 and at least MIN_SIDE around its centre (shifted back inside the document if it
    reaches out). The target is the selection's box inside that window. Without one (``None``): the
    whole document (a side that is no multiple of 8 loses its last few pixels, split over both
    edges) and no target: the model places the object. The images are then sent at
    :func:`generation_size`, and the target is scaled with them (outward, to whole pixels).
    """
    _check_document(doc_width, doc_height)
    if selection is None:
        x, w = _axis(0, doc_width, doc_width)
        y, h = _axis(0, doc_height, doc_height)
        gen_w, gen_h = generation_size(w, h, target_pixels)
        return Window(x, y, w, h, gen_w, gen_h)
    sx, sy, sw, sh = _clip(selection, doc_width, doc_height)
    if sw <= 0 or sh <= 0:
        raise UserError("The selection is empty: select where the object should go, or deselect all "
                        "to let LayerFusion place it anywhere.")
    side = protocol.MIN_TARGET_SIDE
    if min(sw, sh) < side:
        raise UserError("The selection is %d×%d pixels: too small for the model, select at least %d×%d."
                        % (sw, sh, side, side))
    pad = max(sw, sh) // 2
    left, top = max(0, sx - pad), max(0, sy - pad)
    right, bottom = min(doc_width, sx + sw + pad), min(doc_height, sy + sh + pad)
    x, w = _axis(left, right - left, doc_width)
    y, h = _axis(top, bottom - top, doc_height)
    gen_w, gen_h = generation_size(w, h, target_pixels)
    # The selection's box in the window (cut where a side of the document was cut to a multiple of 8).
    tx0, ty0 = max(sx, x) - x, max(sy, y) - y
    tx1, ty1 = min(sx + sw, x + w) - x, min(sy + sh, y + h) - y
    gx0, gy0 = tx0 * gen_w // w, ty0 * gen_h // h
    gx1 = min(gen_w, -(-tx1 * gen_w // w))
    gy1 = min(gen_h, -(-ty1 * gen_h // h))
    if min(gx1 - gx0, gy1 - gy0) < side:
        raise UserError("The selection is too small at this Resolution (%d×%d pixels sent): select a "
                        "bigger area or a smaller window of context." % (gx1 - gx0, gy1 - gy0))
    return Window(x, y, w, h, gen_w, gen_h, (gx0, gy0, gx1 - gx0, gy1 - gy0))


def layer_window(doc_width: int, doc_height: int, selection: Optional[Box], target_pixels: int) -> Window:
    """The window of *Generate background* and *Harmonize*: the selection's bounding box (no context
    added: the layers are the context), else the whole document; sides rounded like
    :func:`object_window`'s and sent at :func:`generation_size`."""
    _check_document(doc_width, doc_height)
    box = (0, 0, doc_width, doc_height) if selection is None else _clip(selection, doc_width, doc_height)
    if box[2] <= 0 or box[3] <= 0:
        raise UserError("The selection is empty: select the area to work on, or deselect all for the "
                        "whole document.")
    x, w = _axis(box[0], box[2], doc_width)
    y, h = _axis(box[1], box[3], doc_height)
    gen_w, gen_h = generation_size(w, h, target_pixels)
    return Window(x, y, w, h, gen_w, gen_h)


def _clip(box: Box, doc_width: int, doc_height: int) -> Box:
    x0, y0 = max(0, box[0]), max(0, box[1])
    x1, y1 = min(doc_width, box[0] + box[2]), min(doc_height, box[1] + box[3])
    return x0, y0, x1 - x0, y1 - y0


# ---- which layers a harmonize takes ----------------------------------------------------------
@dataclass
class LayerFacts:
    """What the plan needs to know of one selected layer, read from Krita over the window."""

    key: Any  # the adapter's handle (the node itself, or its id)
    name: str
    node_type: str  # Krita's Node.type(): "paintlayer", "grouplayer", ...
    stack_index: int  # position in the whole layer stack, bottom = 0
    has_visible: bool  # some pixel with alpha > 0 in the window
    has_transparent: bool  # some pixel with alpha < 255 in the window


@dataclass
class HarmonizePlan:
    foregrounds: List[LayerFacts]  # bottom first, as the request wants them
    background: Optional[LayerFacts]  # None: the projection of what lies beneath the lowest selected layer
    lowest: LayerFacts  # the lowest selected layer


def foreground_problem(layer: LayerFacts) -> Optional[str]:
    """Why ``layer`` cannot be a foreground of the artist's (plain words), or None."""
    if layer.node_type != "paintlayer":
        return "“%s” is a %s: LayerFusion works on paint layers." % (layer.name, _kind(layer.node_type))
    if not layer.has_visible:
        return "“%s” has no visible pixel here: paint the object first." % layer.name
    if not layer.has_transparent:
        return ("“%s” has no transparent pixel here: the model takes a layer's transparency as the "
                "object's outline, so erase around the object." % layer.name)
    return None


def _kind(node_type: str) -> str:
    return {"grouplayer": "group layer", "filelayer": "file layer", "clonelayer": "clone layer",
            "filllayer": "fill layer", "vectorlayer": "vector layer"}.get(node_type, node_type or "layer")


def harmonize_plan(selected: Sequence[LayerFacts], has_beneath: bool) -> HarmonizePlan:
    """Foregrounds and background of *Harmonize selected layers*.

    The selected paint layers, bottom first. If the lowest one is opaque over the window it is the
    background and the others are the foregrounds; otherwise every selected layer is a foreground
    and the background is the picture of everything beneath the lowest one (``has_beneath`` says
    whether anything visible lies there). Each foreground needs visible and transparent pixels.
    """
    if not selected:
        raise UserError("Select the layers to harmonize in the Layers docker (Ctrl+click for several).")
    for layer in selected:
        if layer.node_type != "paintlayer":
            raise UserError(foreground_problem(layer) or "")
    layers = sorted(selected, key=lambda f: f.stack_index)
    lowest = layers[0]
    background: Optional[LayerFacts] = None
    if not lowest.has_transparent and len(layers) > 1:
        background, layers = lowest, layers[1:]
    elif not lowest.has_transparent:
        raise UserError("“%s” is opaque: select the transparent layers to harmonize as well (or "
                        "instead), above their background." % lowest.name)
    elif not has_beneath:
        raise UserError("Nothing visible lies beneath “%s”: select a background layer too, or paint one "
                        "under the layers." % lowest.name)
    if len(layers) > protocol.MAX_FOREGROUNDS:
        raise UserError("%d layers selected: LayerFusion harmonizes at most %d at once (besides their "
                        "background)." % (len(layers), protocol.MAX_FOREGROUNDS))
    for layer in layers:
        problem = foreground_problem(layer)
        if problem:
            raise UserError(problem)
    return HarmonizePlan(layers, background, lowest)


_DEFAULT_NAME = re.compile(r"^(paint ?layer|layer|background|group|vector layer)?\s*\d*( copy.*)?$", re.I)


def layer_prompt(name: str, fallback: str = "") -> str:
    """A layer's name as its prompt, unless it is one Krita made up ("Paint Layer 3")."""
    name = " ".join(name.split())
    return fallback if not name or _DEFAULT_NAME.match(name) else name[: protocol.MAX_PROMPT_CHARS]


# ---- the requests ------------------------------------------------------------------------------
def _common(settings: Any, blend_layers: bool) -> Dict[str, Any]:
    return dict(negative_prompt=settings.negative_prompt, guidance=settings.guidance,
                seed=None if settings.random_seed else settings.seed, loras=settings.lora_choices(),
                options=settings.method_options(), blend_layers=blend_layers, **settings.speed_fields())


def add_foreground_body(settings: Any, window: Window, background_png: str) -> Dict[str, Any]:
    """The validated JSON body of an add_foreground job (ProtocolError if the server would refuse it)."""
    if not settings.foreground_prompt:
        raise UserError("Type a foreground prompt: what the object is.")
    target = None if window.target is None else protocol.Rect(*window.target)
    return validated(protocol.AddForegroundRequest(
        background_png=background_png, foreground_prompt=settings.foreground_prompt,
        background_prompt=settings.background_prompt, target=target,
        **_common(settings, settings.blend_layers)))


def add_background_body(settings: Any, foreground_png: str, layer_name: str = "") -> Dict[str, Any]:
    if not settings.background_prompt:
        raise UserError("Type a background prompt: the scene to put behind the layer.")
    return validated(protocol.AddBackgroundRequest(
        foreground_png=foreground_png, background_prompt=settings.background_prompt,
        foreground_prompt=layer_prompt(layer_name, settings.foreground_prompt),
        **_common(settings, settings.blend_layers)))


def harmonize_body(settings: Any, foregrounds: Sequence[Tuple[str, str]], background_png: str) -> Dict[str, Any]:
    """``foregrounds``: (PNG, layer name) bottom first. A layer's prompt is its name (Krita's own
    names left out); a single layer with a made-up name takes the docker's foreground prompt."""
    fallback = settings.foreground_prompt if len(foregrounds) == 1 else ""
    return validated(protocol.HarmonizeRequest(
        foregrounds=[protocol.LayerUpload(png=png, prompt=layer_prompt(name, fallback)) for png, name in foregrounds],
        background_png=background_png, background_prompt=settings.background_prompt,
        strength=settings.strength, **_common(settings, settings.blend_layers)))


def wanted_images(kind: str, blend_layers: bool) -> Tuple[str, ...]:
    """The result images a canvas job's layers are made of."""
    names = {"add_foreground": ("foreground", "blend"), "add_background": ("background", "blend"),
             "harmonize": ("blend",)}[kind]
    return names + (tuple(protocol.LIGHT_NAMES) if blend_layers else ())


@dataclass
class CanvasSource:
    """What a canvas job was asked on, read from the document on the UI thread.

    ``uploads``: (role, BGRA bytes of the window, whether its alpha is sent, layer name); roles are
    "background" and "foreground" (one per foreground, bottom first). ``anchor`` is the document
    side's own note of where the results go (nodes), handed back to it on insertion.
    """

    kind: str
    document: Any
    window: Window
    uploads: List[Tuple[str, bytes, bool, str]]
    anchor: Any = None
    blend_layers: bool = False
