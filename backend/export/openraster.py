"""OpenRaster (.ora) files: a zip of PNG layers plus stack.xml, which Krita and GIMP open as layers.

What Krita reads (plugins/impex/ora/kis_open_raster_stack_load_visitor.cpp in KDE/krita): per layer
``name``, ``x``, ``y``, ``opacity``, ``visibility``, ``edit-locked``, ``selected`` and ``composite-op``
(``svg:src-over``, ``svg:multiply``, ``svg:screen``, ... or ``krita:<op id>``); a nested ``<stack>`` is
a group, isolated only with ``isolation="isolate"`` (anything else loads as pass-through). There is no
attribute for inherit alpha that can go with a blend mode: the loader maps ``svg:src-atop`` to inherit
alpha with the *normal* mode, and the saver (kis_open_raster_stack_save_visitor.cpp) writes
``svg:src-atop`` in place of the mode of any layer with inherit alpha, so a multiply or screen layer with
inherit alpha cannot be carried. The light stack (:func:`light_stack`) therefore bakes the foreground
pair (see :func:`baked_foreground_pair`).
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence, Tuple, Union
from xml.sax.saxutils import quoteattr

import numpy as np
from PIL import Image

from backend.pipeline import light_layers
from backend.pipeline.light_layers import LightLayers

THUMBNAIL_SIDE = 256

# ORA's names for the modes this writer composites into the merged image, and light_layers' names.
COMPOSITE_OPS = {"svg:src-over": "over", "svg:multiply": "multiply", "svg:screen": "screen"}


@dataclass(frozen=True)
class Layer:
    name: str
    image: Image.Image
    composite_op: str = "svg:src-over"
    opacity: float = 1.0
    visible: bool = True


@dataclass(frozen=True)
class Group:
    """A nested ``<stack>``, children top first. ``isolated``: composited on its own, then onto what is
    below; otherwise pass-through (its children composite straight onto what is below)."""
    name: str
    children: Sequence["Entry"]
    composite_op: str = "svg:src-over"
    opacity: float = 1.0
    visible: bool = True
    isolated: bool = True


Entry = Union[Layer, Group, Tuple[str, Image.Image]]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _nodes(entries: Sequence[Entry]) -> list[Layer | Group]:
    """The tree checked, with the old ``(name, image)`` pairs as plain normal-mode layers."""
    out: list[Layer | Group] = []
    for entry in entries:
        node = entry if isinstance(entry, (Layer, Group)) else Layer(*entry)
        if node.composite_op not in COMPOSITE_OPS:
            raise ValueError(f"unsupported composite-op {node.composite_op!r} for {node.name!r}; "
                             f"use one of {sorted(COMPOSITE_OPS)}")
        if isinstance(node, Group):
            if not node.children:
                raise ValueError(f"group {node.name!r} has no layers")
            node = replace(node, children=_nodes(node.children))
        out.append(node)
    return out


def _checked(entry: Entry) -> Layer | Group:
    """A node of a tree that went through :func:`_nodes` (where the pairs became layers)."""
    assert isinstance(entry, (Layer, Group)), "the stack was not normalized by _nodes"
    return entry


def _leaves(nodes: Sequence[Entry]) -> list[Layer]:
    out: list[Layer] = []
    for node in map(_checked, nodes):
        out.extend(_leaves(node.children) if isinstance(node, Group) else [node])
    return out


def _rgba(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGBA"))


def _opacity_u8(opacity: float) -> int:
    return int(round(min(max(opacity, 0.0), 1.0) * 255))


def _flatten_onto(canvas: np.ndarray, nodes: Sequence[Entry], opacity: int) -> np.ndarray:
    for entry in reversed([_checked(node) for node in nodes]):  # bottom first
        if not entry.visible:
            continue
        own = light_layers.mul(opacity, _opacity_u8(entry.opacity)).item()
        if isinstance(entry, Group) and not entry.isolated:
            # Pass-through, as Krita's projection leaves do it: the group's opacity multiplies its children's.
            canvas = _flatten_onto(canvas, entry.children, own)
            continue
        if isinstance(entry, Group):
            source = _flatten_onto(np.zeros_like(canvas), entry.children, 255)
        else:
            source = _rgba(entry.image)
        canvas = light_layers.composite(canvas, source, COMPOSITE_OPS[entry.composite_op], opacity=own)
    return canvas


def flatten(entries: Sequence[Entry]) -> Image.Image:
    """The stack composited with its modes (RGBA), with light_layers' 8-bit Krita arithmetic."""
    nodes = _nodes(entries)
    width, height = _leaves(nodes)[0].image.size
    return Image.fromarray(_flatten_onto(np.zeros((height, width, 4), np.uint8), nodes, 255), "RGBA")


def _stack_xml(nodes: Sequence[Entry], sources: dict[int, str], indent: str) -> str:
    lines = []
    for entry in map(_checked, nodes):
        common = (f'name={quoteattr(entry.name)} opacity="{min(max(entry.opacity, 0.0), 1.0):g}" '
                  f'visibility="{"visible" if entry.visible else "hidden"}" '
                  f'composite-op="{entry.composite_op}"')
        if isinstance(entry, Group):
            isolation = "isolate" if entry.isolated else "auto"
            lines.append(f'{indent}<stack {common} isolation="{isolation}">\n'
                         f'{_stack_xml(entry.children, sources, indent + "  ")}{indent}</stack>\n')
        else:
            lines.append(f'{indent}<layer {common} src="{sources[id(entry)]}" x="0" y="0"/>\n')
    return "".join(lines)


def write_openraster(path: Path, layers: Sequence[Entry], *, merged: Image.Image | None = None) -> None:
    """``layers`` top first: ``(name, image)`` pairs (normal mode), :class:`Layer` or :class:`Group`, all
    the same size. ``merged`` (mergedimage.png, what viewers show): the stack composited with its modes
    unless given."""
    if not layers:
        raise ValueError("an OpenRaster file needs at least one layer")
    nodes = _nodes(layers)
    leaves = _leaves(nodes)
    width, height = leaves[0].image.size
    if any(leaf.image.size != (width, height) for leaf in leaves):
        raise ValueError(f"all layers must be {width}x{height}; got "
                         f"{sorted({leaf.image.size for leaf in leaves})}")
    merged = (merged if merged is not None else flatten(nodes)).convert("RGBA")
    if merged.size != (width, height):
        raise ValueError(f"the merged image must be {width}x{height}; got {merged.size}")
    thumbnail = merged.copy()
    thumbnail.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    sources: dict[int, str] = {}
    for leaf in leaves:  # one file per layer object, even if the tree holds it twice
        sources.setdefault(id(leaf), f"data/layer{len(sources)}.png")
    stack = (f'<?xml version="1.0" encoding="UTF-8"?>\n<image version="0.0.3" w="{width}" h="{height}">\n'
             f'<stack isolation="isolate">\n{_stack_xml(nodes, sources, "  ")}</stack>\n</image>\n')
    with zipfile.ZipFile(path, "w") as archive:
        # The spec wants "mimetype" first and uncompressed, so tools can sniff the type.
        archive.writestr(zipfile.ZipInfo("mimetype"), "image/openraster", compress_type=zipfile.ZIP_STORED)
        archive.writestr("stack.xml", stack, compress_type=zipfile.ZIP_DEFLATED)
        for leaf in {id(leaf): leaf for leaf in leaves}.values():
            archive.writestr(sources[id(leaf)], _png(leaf.image))
        archive.writestr("mergedimage.png", _png(merged))
        archive.writestr("Thumbnails/thumbnail.png", _png(thumbnail))


def _below_foreground(foreground: np.ndarray, background: np.ndarray, layers: LightLayers) -> list[Entry]:
    return [Layer("Foreground", Image.fromarray(foreground, "RGBA")),
            Layer("Light", Image.fromarray(layers.light, "RGB"), "svg:screen"),
            Layer("Shadows", Image.fromarray(layers.shadows, "RGB"), "svg:multiply"),
            Layer("Background", Image.fromarray(background, "RGB"))]


def baked_foreground_pair(foreground: np.ndarray, background: np.ndarray,
                          layers: LightLayers) -> tuple[np.ndarray, np.ndarray]:
    """The foreground pair as RGBA layers that need no inherit alpha, for a pass-through group.

    Without inherit alpha a pair layer lands on the canvas already composited below it,
    ``D = alpha_over(F, relit B)``, mixed by its own alpha. So: alpha 255 wherever the foreground has
    any alpha, 0 where it has none (the clip), and colours solved per pixel from D to the intended
    result (:func:`light_layers.compose_light_stack`). Where the foreground is opaque D is F and the
    colours are exactly ``layers``' foreground pair; on partial-alpha edges they differ, carrying the
    part of the relight that inherit alpha would have applied to the foreground only.
    """
    alpha = foreground[..., 3:4]
    below = np.asarray(flatten(_below_foreground(foreground, background, layers)))
    solved = light_layers.split_light(below, below[..., :3],
                                      light_layers.compose_light_stack(foreground, background, layers))
    coverage = np.where(alpha > 0, 255, 0).astype(np.uint8)
    shadows = np.where(alpha > 0, solved.foreground_shadows, light_layers.WHITE).astype(np.uint8)
    light = np.where(alpha > 0, solved.foreground_light, light_layers.BLACK).astype(np.uint8)
    return np.concatenate([shadows, coverage], axis=-1), np.concatenate([light, coverage], axis=-1)


def light_stack(foreground: np.ndarray, background: np.ndarray, layers: LightLayers, *,
                blend: np.ndarray | None = None) -> list[Entry]:
    """The relight layers as ORA entries, top first (uint8 arrays: RGBA foreground, RGB others):
    a pass-through ``Foreground`` group (``Foreground light`` screen, ``Foreground shadows`` multiply,
    ``Foreground``), ``Light`` (screen), ``Shadows`` (multiply), ``Background``; ``blend``, if given,
    on top and hidden, for comparison.

    ORA cannot say "inherit alpha" for a multiply/screen layer (module docstring), so the foreground
    pair is baked (:func:`baked_foreground_pair`): Krita shows the intended result, and the pair is
    exactly ``layers``' where the foreground is opaque or clear. Switching inherit alpha on in Krita
    by hand would need the group isolated and breaks the edges; the CLI's blend.png stays the reference.
    """
    shadows, light = baked_foreground_pair(foreground, background, layers)
    foreground_layer, *rest = _below_foreground(foreground, background, layers)
    entries: list[Entry] = []
    if blend is not None:
        entries.append(Layer("Blend", Image.fromarray(blend, "RGB"), visible=False))
    entries += [
        Group("Foreground", [
            Layer("Foreground light", Image.fromarray(light, "RGBA"), "svg:screen"),
            Layer("Foreground shadows", Image.fromarray(shadows, "RGBA"), "svg:multiply"),
            foreground_layer,
        ], isolated=False),
        *rest,
    ]
    return entries


def write_light_openraster(path: Path, foreground: np.ndarray, background: np.ndarray, layers: LightLayers,
                           *, blend: np.ndarray | None = None) -> None:
    """layers.ora with the relight layers. mergedimage.png is the intended (inherit-alpha) result,
    :func:`light_layers.compose_light_stack`, which matches the blend within 8-bit rounding; the baked
    stack composites to the same image (up to Krita's own rounding of normal mode)."""
    merged = light_layers.compose_light_stack(foreground, background, layers)
    write_openraster(path, light_stack(foreground, background, layers, blend=blend),
                     merged=Image.fromarray(merged, "RGB"))
