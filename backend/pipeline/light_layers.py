""""Blend as layers": what the generative blend adds to the plain composite, as editable Krita layers.

The plain composite is ``C = alpha_over(F, B)``. Per pixel and channel (values in [0, 1]) a multiply
layer ``S`` followed by a screen layer ``L`` maps ``x -> L + (1 - L) S x``, which is affine in ``x``.
An affine map applied to F and to B and then alpha-composited equals the same map applied to C, so one
pair (S, L) serves both the background (``Shadows``/``Light`` between background and foreground) and
the foreground (``Foreground shadows``/``Foreground light`` clipped to it with Krita's inherit alpha).
Where the blend is darker than C: ``S = Bl / C, L = 0``; where it is lighter: ``S = 1,
L = (Bl - C) / (1 - C)``. Hiding the four layers gives C exactly.

Krita's semantics, from its source (KDE/krita):

* ``libs/image/kis_layer.cc``: "Inherit alpha" is ``disableAlphaChannel``: the layer's channel flags
  lose the alpha channel. ``kis_layer_projection_plane.cpp`` hands those flags to the painter.
* ``libs/pigment/compositeops/KoCompositeOpBase.h``: no alpha flag means ``alphaLocked``; the
  destination's alpha is kept, and a fully transparent destination pixel is zeroed.
* ``KoCompositeOpGeneric.h`` (``KoCompositeOpGenericSC``, used for multiply and screen): alpha locked,
  ``dst = lerp(dst, f(src, dst), srcAlpha)`` where ``dstAlpha != 0``; otherwise the general
  source-over-with-a-blend-function formula (see :func:`composite`).
* ``KoCompositeOpFunctions.h``: ``cfMultiply = mul(src, dst)``, ``cfScreen = unionShapeOpacity(src, dst)
  = src + dst - mul(src, dst)``; 8-bit arithmetic in ``libs/pigment/KoIntegerMaths.h``
  (``UINT8_MULT``, ``UINT8_MULT3``, ``UINT8_BLEND``, ``UINT8_DIVIDE``), reproduced here bit for bit.

Quantization: S and L are chosen per channel among the rounded value and its neighbours (±1, ±2), keeping
the one whose 8-bit reconstruction (this module's Krita arithmetic, the fg/bg composite included) is
closest to the blend; ties go to the rounded value. Near black and white nothing blows up: a step of
1/255 in S moves the result by at most ``C/255`` (small where C is dark), a step in L by at most
``(1 - C)/255`` (small where C is bright); C = 0 takes ``L = Bl`` exactly, C = 1 with a darker blend
``S = Bl`` exactly, and every 8-bit target below (above) C is reachable by some S (L). So where alpha is 0
or 255 the stack is exact for all 256 x 256 (C, Bl) pairs (checked exhaustively in the tests). The only
error left is on partial-alpha pixels, where the two sides are rounded separately before alpha mixes them:
1/255 at most, on about 0.02 % of random channel values (mean 0.0002/255); rounding alone, without the
neighbour search, gives mean 0.14/255. Measured on the structured test scenes (gradients, a near-black
shadow, a near-white rim light, regions at 0 and 255, an alpha ramp between opposite colours): max 1/255,
p99 0, mean <= 0.0001/255.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from backend.pipeline.decoding import alpha_over

WHITE = 255  # multiply by white and screen with black change nothing: the identity pixels
BLACK = 0

Array = np.ndarray
BlendFunc = Callable[[Array, Array], Array]


@dataclass(frozen=True)
class LightLayers:
    """The four relight layers, uint8 HxWx3. Multiply layers are white, screen layers black, where they
    have no effect: the background pair where the foreground is opaque, the foreground pair where it is
    transparent."""
    shadows: Array             # multiply, over the background, below the foreground
    light: Array               # screen, above ``shadows``
    foreground_shadows: Array  # multiply, clipped to the foreground (inherit alpha)
    foreground_light: Array    # screen, clipped to the foreground (inherit alpha)


# --- Krita's 8-bit arithmetic (KoIntegerMaths.h), on int32 arrays -------------------------------------

def _i32(x: Array | int) -> Array:
    return np.asarray(x, dtype=np.int32)


def mul(a: Array | int, b: Array | int) -> Array:
    """UINT8_MULT: a * b / 255, rounded."""
    c = _i32(a) * _i32(b) + 0x80
    return ((c >> 8) + c) >> 8


def mul3(a: Array | int, b: Array | int, c: Array | int) -> Array:
    """UINT8_MULT3: a * b * c / 255², rounded (Krita's own approximation)."""
    t = _i32(a) * _i32(b) * _i32(c) + 0x7F5B
    return ((t >> 7) + t) >> 16


def lerp(a: Array | int, b: Array | int, t: Array | int) -> Array:
    """Arithmetic::lerp(a, b, t) = UINT8_BLEND(b, a, t): a + (b - a) t / 255 (signed, arithmetic shift)."""
    a = _i32(a)
    c = (_i32(b) - a) * _i32(t) + 0x80
    return a + (((c >> 8) + c) >> 8)


def div(a: Array | int, b: Array) -> Array:
    """UINT8_DIVIDE: a * 255 / b, rounded; b must not be 0."""
    b = _i32(b)
    return (_i32(a) * 255 + b // 2) // b


def cf_over(src: Array, dst: Array) -> Array:
    return _i32(src)


def cf_multiply(src: Array, dst: Array) -> Array:
    return mul(src, dst)


def cf_screen(src: Array, dst: Array) -> Array:
    """cfScreen = unionShapeOpacity(src, dst) = src + dst - mul(src, dst)."""
    return _i32(src) + _i32(dst) - mul(src, dst)


def _over_opaque(dst: Array, src: Array, src_alpha: Array) -> Array:
    """Source over an opaque pixel, rounded to nearest: alpha_over's arithmetic."""
    return (src * src_alpha + dst * (255 - src_alpha) + 127) // 255


BLEND_FUNCS: dict[str, BlendFunc] = {"over": cf_over, "multiply": cf_multiply, "screen": cf_screen}


def composite(dst: Array, src: Array, mode: str, *, inherit_alpha: bool = False, opacity: int = 255) -> Array:
    """One layer onto a canvas, both uint8 HxWx4 straight alpha, as KoCompositeOpGenericSC does it.

    ``inherit_alpha`` is Krita's alpha lock: the canvas keeps its alpha, colour is
    ``lerp(dst, f(src, dst), srcAlpha)``. Krita's normal mode is its own op (KoOptimizedCompositeOpOver32,
    SIMD, not reproduced); it is modelled by the same formula with ``f(src, dst) = src``, except that over an
    opaque canvas it rounds like ``alpha_over`` (the generic ``lerp`` would differ from that by 1/255 in
    16448 of the 2^24 (F, B, a) triples), so Krita's normal mode may differ from this by 1/255 at times.
    """
    if dst.shape != src.shape or dst.ndim != 3 or dst.shape[-1] != 4:
        raise ValueError(f"composite needs two HxWx4 arrays of one shape; got {dst.shape} and {src.shape}")
    func = BLEND_FUNCS[mode]
    d, s = _i32(dst[..., :3]), _i32(src[..., :3])
    da = _i32(dst[..., 3:4])
    sa = mul3(src[..., 3:4], 255, opacity)
    f = func(s, d)
    if inherit_alpha:
        colour = np.where(da == 0, 0, lerp(d, f, sa))  # KoCompositeOpBase zeroes transparent pixels
        colour = np.where((sa == 0) & (da != 0), d, colour)
        return np.concatenate([colour, da], axis=-1).astype(np.uint8)
    union = da + sa - mul(sa, da)
    general = mul3(255 - sa, da, d) + mul3(255 - da, sa, s) + mul3(sa, da, f)
    onto_opaque = _over_opaque(d, s, sa) if mode == "over" else lerp(d, f, sa)
    colour = np.select(
        [sa == 0, da == 0, da == 255, sa == 255],
        [d, s, onto_opaque, lerp(s, f, da)],
        div(general, np.maximum(union, 1)))
    alpha = np.select([sa == 0, da == 0, (da == 255) | (sa == 255)], [da, sa, np.full_like(da, 255)], union)
    return np.concatenate([np.clip(colour, 0, 255), alpha], axis=-1).astype(np.uint8)


# --- the split ----------------------------------------------------------------------------------------

def _check(foreground: Array, background: Array, **others: Array) -> None:
    if foreground.ndim != 3 or foreground.shape[-1] != 4:
        raise ValueError(f"the foreground must be HxWx4 (RGBA); got shape {foreground.shape}")
    height, width = foreground.shape[:2]
    for name, array in {"background": background, **others}.items():
        if array.shape != (height, width, 3):
            raise ValueError(f"{name} must be {height}x{width}x3 (RGB) like the foreground; "
                             f"got shape {array.shape}")


def _relight(x: Array, shadows: Array, light: Array) -> Array:
    """Multiply then screen, 8 bit: what the pair does to an opaque pixel."""
    return cf_screen(light, mul(shadows, x))


def _reconstruct(foreground: Array, background: Array, shadows: Array, light: Array) -> Array:
    """The stack's result with the same (S, L) on both sides; the identity masking does not change it."""
    fg = _relight(foreground[..., :3], shadows, light)
    bg = _relight(background, shadows, light)
    return _over_opaque(bg, fg, _i32(foreground[..., 3:4]))


_SEARCH = (0, -1, 1, -2, 2)  # the rounded value first: it wins ties


def split_light(foreground: Array, background: Array, blend: Array) -> LightLayers:
    """The relight layers that turn ``alpha_over(foreground, background)`` into ``blend`` (all uint8)."""
    _check(foreground, background, blend=blend)
    composite_ = alpha_over(foreground, background).astype(np.float64)
    target = _i32(blend)
    darker = target < composite_
    # Darker: S = Bl / C (C > 0 there). Lighter or equal: L = (Bl - C) / (1 - C); C = 255 gives L = 0.
    s0 = np.where(darker, np.floor(255 * target / np.maximum(composite_, 1) + 0.5), WHITE)
    headroom = 255 - composite_
    l0 = np.where(darker | (headroom == 0), BLACK,
                  np.floor(255 * (target - composite_) / np.maximum(headroom, 1) + 0.5))
    best_s, best_l = _i32(s0), _i32(l0)
    best_err = np.full(target.shape, np.iinfo(np.int32).max, dtype=np.int32)
    for step in _SEARCH:
        s = np.where(darker, np.clip(s0 + step, 0, 255), WHITE).astype(np.int32)
        light = np.where(darker, BLACK, np.clip(l0 + step, 0, 255)).astype(np.int32)
        err = np.abs(_reconstruct(foreground, background, s, light) - target)
        better = err < best_err
        best_s, best_l, best_err = (np.where(better, s, best_s), np.where(better, light, best_l),
                                    np.where(better, err, best_err))
    alpha = foreground[..., 3:4]
    opaque, clear = alpha == 255, alpha == 0
    return LightLayers(
        shadows=np.where(opaque, WHITE, best_s).astype(np.uint8),
        light=np.where(opaque, BLACK, best_l).astype(np.uint8),
        foreground_shadows=np.where(clear, WHITE, best_s).astype(np.uint8),
        foreground_light=np.where(clear, BLACK, best_l).astype(np.uint8))


# --- the reference compositor -------------------------------------------------------------------------

def _opaque(rgb: Array) -> Array:
    return np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, dtype=np.uint8)], axis=-1)


def compose_light_stack(foreground: Array, background: Array, layers: LightLayers, *,
                        hidden: bool = False) -> Array:
    """The stack as Krita composites it, uint8 RGB. Bottom up: background; ``Shadows`` (multiply);
    ``Light`` (screen); an isolated group of the foreground with ``Foreground shadows`` (multiply) and
    ``Foreground light`` (screen) above it, both with inherit alpha. ``hidden``: the four layers hidden,
    which is ``alpha_over(foreground, background)``."""
    _check(foreground, background, shadows=layers.shadows, light=layers.light,
           foreground_shadows=layers.foreground_shadows, foreground_light=layers.foreground_light)
    canvas = _opaque(background)
    group = composite(np.zeros_like(foreground), foreground, "over")  # the group starts transparent
    if not hidden:
        canvas = composite(canvas, _opaque(layers.shadows), "multiply")
        canvas = composite(canvas, _opaque(layers.light), "screen")
        group = composite(group, _opaque(layers.foreground_shadows), "multiply", inherit_alpha=True)
        group = composite(group, _opaque(layers.foreground_light), "screen", inherit_alpha=True)
    return composite(canvas, group, "over")[..., :3]
