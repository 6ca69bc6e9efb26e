"""The docker's settings, persisted with QSettings between Krita sessions."""
import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from .qt import QSettings
from .wire import protocol, sizes

GROUP = "LayerFusion"


@dataclass
class Settings:
    server_url: str = "http://%s:%d" % (protocol.DEFAULT_HOST, protocol.DEFAULT_PORT)
    token: str = ""
    foreground_prompt: str = ""
    background_prompt: str = ""
    negative_prompt: str = ""
    blend: str = protocol.BlendMode.generative.value
    seed: int = 0
    random_seed: bool = True
    steps: int = 25  # the quality steps: what jobs take with Fast off
    guidance: float = 7.0
    # Fast: the server's step-distilled preset (Health.fast) runs the jobs, at ``fast_steps`` (within the
    # preset's range; 0 = its default), with the sampler and guidance it picks. ``steps`` is kept for
    # when Fast goes off again.
    fast: bool = False
    fast_steps: int = 0
    strength: float = 0.5
    local_reblend: bool = True  # re-blend only the region a move affected, keep the rest of the Blend
    threshold: float = 0.5
    boundary_coefficient: float = protocol.DEFAULT_BOUNDARY_COEFFICIENT  # inf: a hard step
    mask_source: str = protocol.MaskSource.product.value
    content_prior: str = protocol.ContentPrior.layerwise.value
    auto_reblend: bool = False
    # With auto re-blend and Fast both on, a drag re-blends at most every this many ms (auto_reblend.py).
    live_interval_ms: int = 400
    insert_mask: bool = False  # also fetch the hard mask and insert it as a hidden "Mask" layer
    # Jobs also return the blend as Shadows and Light layers (multiply / screen), the Blend layer then
    # going in hidden: the canvas jobs, and Generate with the generative blend (not Regenerate blend).
    blend_layers: bool = False
    # Pixels the model works at; SDXL's one megapixel unless a smaller (test, preview) size is wanted.
    target_pixels: int = sizes.SDXL_PIXELS
    history_limit: int = 12
    # The picker's rows as JSON text ('[{"name": ..., "strength": ...}]'): QSettings keeps plain values.
    loras: str = "[]"

    def method_options(self) -> Any:
        return protocol.MethodOptions(
            mask_source=protocol.MaskSource(self.mask_source),
            threshold=self.threshold,
            boundary_coefficient=self.boundary_coefficient,
            content_prior=protocol.ContentPrior(self.content_prior),
        )

    def lora_choices(self) -> List[Any]:
        return parse_loras(self.loras)

    def speed_fields(self, quality_steps: Optional[int] = None) -> Dict[str, Any]:
        """A job request's ``speed`` and ``steps``: the fast preset's steps with Fast on, else
        ``quality_steps`` (a re-blend's, from its group) or the docker's steps."""
        if self.fast:
            return dict(speed=protocol.Speed.fast, steps=self.fast_steps if self.fast_steps >= 1 else self.steps)
        return dict(speed=protocol.Speed.quality, steps=self.steps if quality_steps is None else quality_steps)


def group_steps(params: Dict[str, Any], steps: int) -> int:
    """The quality steps a group's re-blend takes: the group's own, unless it was made with Fast (its
    few steps are the preset's) or names none; then the docker's."""
    own = params.get("steps")
    if params.get("speed") == protocol.Speed.fast.value or isinstance(own, bool) or not isinstance(own, (int, float)):
        return steps
    return int(own)


def parse_loras(data: Any) -> List[Any]:
    """``[{"name", "strength"}, ...]`` (JSON text from the settings, or a job's params) as LoraChoices.

    Tolerant by design: stored text may be damaged and old jobs name no LoRAs. A malformed entry is
    skipped rather than failing a re-blend; strengths are held to the protocol's range.
    """
    if isinstance(data, str):
        try:
            data = json.loads(data) if data.strip() else []
        except ValueError:
            return []
    limit = protocol.MAX_LORA_STRENGTH
    out: List[Any] = []
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
            continue
        try:
            strength = float(item.get("strength", 1.0))
        except (TypeError, ValueError):
            strength = 1.0
        if strength != strength:  # NaN
            strength = 1.0
        out.append(protocol.LoraChoice(name=item["name"].strip(), strength=min(limit, max(-limit, strength))))
    return out


def dump_loras(choices: Sequence[Any]) -> str:
    return json.dumps([{"name": c.name, "strength": float(c.strength)} for c in choices])


def _coerce(value: Any, default: Any) -> Any:
    """QSettings hands back strings from ini files; turn them back into the default's type."""
    if isinstance(default, bool):
        if isinstance(value, str):
            return value.lower() in ("true", "1", "yes")
        return bool(value)
    return type(default)(value)


def load(store: QSettings) -> Settings:
    out = Settings()
    store.beginGroup(GROUP)
    try:
        for f in dataclasses.fields(Settings):
            if store.contains(f.name):
                default = getattr(out, f.name)
                try:
                    setattr(out, f.name, _coerce(store.value(f.name), default))
                except (TypeError, ValueError):
                    pass  # a damaged entry falls back to the default
    finally:
        store.endGroup()
    return out


def save(store: QSettings, values: Settings) -> None:
    store.beginGroup(GROUP)
    try:
        for f in dataclasses.fields(Settings):
            store.setValue(f.name, getattr(values, f.name))
    finally:
        store.endGroup()
    store.sync()


def default_store() -> QSettings:
    return QSettings("LayerFusion", "krita-plugin")
