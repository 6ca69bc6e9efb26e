"""Step-distilled SDXL: which sampler, guidance and steps each distillation was trained for.

A distilled LoRA (SDXL-Lightning, Hyper-SD, DMD2, LCM-LoRA, TCD) or a merged distilled checkpoint
(Turbo, Lightning) only paints well with the scheduler and the few steps it was distilled for, and
without guidance (so a step runs the conditional rows alone, three instead of six), or the low CFG a
"CFG-preserving" variant needs. The files do not say which they are; their published names do
("sdxl_lightning_4step_lora", "Hyper-SDXL-8steps-CFG-lora", "dmd2_sdxl_4step_lora",
"lcm-lora-sdxl"), so the name is read unless the server's configuration names the family.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from shared.protocol import FastPreset, Sampler


@dataclass(frozen=True)
class Family:
    sampler: Sampler
    default_steps: int
    min_steps: int = 1
    max_steps: int = 8
    guidance: float = 1.0  # <= 1: unguided


FAMILIES: dict[str, Family] = {
    "lightning": Family(Sampler.euler_trailing, default_steps=4),
    "hyper": Family(Sampler.tcd, default_steps=4, max_steps=12),
    "dmd2": Family(Sampler.lcm, default_steps=4),
    "lcm": Family(Sampler.lcm, default_steps=4, min_steps=2),
    "tcd": Family(Sampler.tcd, default_steps=4, min_steps=2),
    "turbo": Family(Sampler.euler_ancestral_trailing, default_steps=1, max_steps=4),
}
# Hyper-SD's "CFG" LoRAs keep guidance working: they are run at a low CFG (its authors: 5 to 8).
CFG_PRESERVING_GUIDANCE = 5.0
MODEL_SOURCE = "model"  # FastPreset.source when the served checkpoint itself is distilled

_STEPS = re.compile(r"(\d+)[-_ ]?steps?")


class DistilledError(ValueError):
    """A fast preset that cannot be built; the message says what to name."""


def guess_family(name: str) -> Optional[str]:
    """The distillation a published file name says, or None."""
    lowered = name.lower()
    for family in ("lightning", "hyper", "dmd2", "lcm", "tcd", "turbo"):
        if family in lowered:
            return family
    return "dmd2" if "dmd" in lowered else None


def preset(source: str, family: Optional[str] = None) -> FastPreset:
    """The fast preset of a distilled LoRA (``source`` its name) or, with ``source`` = MODEL_SOURCE and a
    family, of the served checkpoint. The steps it was distilled for come from the name when it says
    ("4step", "8steps"), else the family's usual count."""
    family = family or guess_family(source)
    if family is None:
        raise DistilledError(
            "cannot tell which distillation '%s' is: its name should contain lightning, hyper, dmd2, lcm, "
            "tcd or turbo, or give the family in the server's configuration" % source)
    if family not in FAMILIES:
        raise DistilledError("unknown distillation '%s': one of %s" % (family, ", ".join(FAMILIES)))
    spec = FAMILIES[family]
    default = spec.default_steps
    named = _STEPS.search(source.lower()) if source != MODEL_SOURCE else None
    if named:
        default = min(max(int(named.group(1)), spec.min_steps), max(spec.max_steps, int(named.group(1))))
    guidance = CFG_PRESERVING_GUIDANCE if family == "hyper" and "cfg" in source.lower() else spec.guidance
    return FastPreset(family=family, source=source, sampler=spec.sampler, guidance=guidance,
                      min_steps=spec.min_steps, max_steps=max(spec.max_steps, default), default_steps=default)


def configured(fast_lora: Optional[str], fast_family: Optional[str]) -> Optional[FastPreset]:
    """The server's (or CLI's) preset from --fast-lora / --fast-family; None when neither is given."""
    if not fast_lora and not fast_family:
        return None
    return preset(fast_lora or MODEL_SOURCE, fast_family)


def fast_steps_problem(fast: FastPreset, steps: int) -> str:
    """Why ``steps`` does not suit the preset; empty when it does."""
    if fast.min_steps <= steps <= fast.max_steps:
        return ""
    return "the fast preset (%s, %s) runs %d to %d steps (distilled for %d), not %d" % (
        fast.family, fast.source, fast.min_steps, fast.max_steps, fast.default_steps, steps)
