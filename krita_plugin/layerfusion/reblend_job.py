"""What a re-blend sends: the group's layers as PNGs at the generation size, and the request's JSON.

``upload`` runs on Qt's thread pool (``pixels.in_background``): scaling, PNG encoding and serializing
megabytes of base64 are kept off the UI thread. A layer whose PNG the source already carries (taken
over from an earlier read of the same drag, see ``reblend.read_source``) is not encoded again.
"""
import base64
from typing import Any, Dict, Optional, Tuple

from .local_blend import scaled, whole_foreground
from .pixels import encode_png, fitted, image_from_bgra
from .settings import Settings, group_steps, parse_loras
from .targets import ReblendSource
from .wire import Body, protocol, serialized, validated


def is_local(source: ReblendSource, settings: Settings) -> bool:
    """Whether only the region the move affected is re-blended (the rest of the Blend kept)."""
    return settings.local_reblend and source.changed is not None and source.previous_blend is not None


def layer_png(source: ReblendSource, name: str) -> str:
    """One of the source's layers (BGRA at the group's size) as a base64 PNG at the generation size."""
    t = source.target
    data = whole_foreground(source) if name == "foreground" else source.pixels(name)
    assert data is not None
    image = fitted(image_from_bgra(data, t.width, t.height), t.gen_width, t.gen_height)
    return base64.b64encode(encode_png(image)).decode("ascii")


def upload(source: ReblendSource, settings: Settings, known: Dict[str, str]) -> Tuple[Dict[str, str], Body]:
    """The PNGs sent (``known`` ones as they are) and the checked, serialized request (ProtocolError)."""
    local = is_local(source, settings)
    names = ("foreground", "background") + (("previous_blend",) if local else ())
    pngs = {name: known[name] if name in known else layer_png(source, name) for name in names}
    return pngs, serialized(validated(reblend_request(source, settings, pngs, local)))


def reblend_request(source: ReblendSource, s: Settings, pngs: Dict[str, str], local: bool) -> Any:
    """The ReblendRequest for ``source``: the group's own prompts, seed and LoRAs, the docker's
    strength, speed and method options."""
    p = source.params
    t = source.target
    changed: Optional[Any] = None
    if local:
        assert source.changed is not None
        changed = protocol.Rect(*scaled(source.changed, t.gen_width / t.width, t.gen_height / t.height,
                                        t.gen_width, t.gen_height))
    return protocol.ReblendRequest(
        foreground_png=pngs["foreground"], background_png=pngs["background"],
        foreground_prompt=p.get("foreground_prompt") or s.foreground_prompt or "foreground",
        background_prompt=p.get("background_prompt") or s.background_prompt or "background",
        negative_prompt=str(p.get("negative_prompt", s.negative_prompt)),
        strength=s.strength, guidance=float(p.get("guidance", s.guidance)),
        **s.speed_fields(group_steps(p, s.steps)),
        seed=p.get("seed") if isinstance(p.get("seed"), int) else None,
        # the LoRAs the group was made with, not the picker's: the blend must match its layers
        loras=parse_loras(p.get("loras")), options=s.method_options(),
        previous_blend_png=pngs.get("previous_blend"), changed=changed)
