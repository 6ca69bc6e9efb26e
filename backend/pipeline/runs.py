"""What the pipeline's runs share: the row order of the branches, the output, a run's state and its
step reports. Below both the generation (layerfusion.py) and the jobs on given layers (canvas.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from backend.pipeline import conditioning
from backend.pipeline.attention import FusionState
from backend.pipeline.progress import CancelCheck, GenerationCancelled, StepCallback, StepInfo
from shared.protocol import MethodOptions

FG, BG, BL = 0, 1, 2


@dataclass
class LayerFusionOutput:
    """Images as float tensors in [0, 1], [C, H, W]: foreground RGBA (straight alpha), background and
    blend RGB (blend is None when the run has no blend branch or it was not asked for). ``maps``: what
    the method saw, each [h, w] in [0, 1] on the prior grid (see ``method_maps``)."""

    foreground: Optional[torch.Tensor] = None
    background: Optional[torch.Tensor] = None
    blend: Optional[torch.Tensor] = None
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    content: dict[str, torch.Tensor] = field(default_factory=dict)  # block -> c_l at the prior step
    info: dict = field(default_factory=dict)


@dataclass
class Run:
    """What one generation's steps share."""

    encoded: conditioning.BranchPrompts
    time_ids: torch.Tensor
    options: MethodOptions
    steps: int
    guidance: float
    guided: bool
    latent_size: tuple[int, int]
    block: str
    state: FusionState
    report: "Reporter"
    should_cancel: Optional[CancelCheck]
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    content: dict[str, torch.Tensor] = field(default_factory=dict)
    # add_foreground: where the object may be ([h, w] on the latent grid), and what keeps the
    # foreground's latent transparent outside it after each step.
    region: Optional[torch.Tensor] = None
    confine: Optional[Callable[[torch.Tensor, Any], torch.Tensor]] = None
    generator: Optional[torch.Generator] = None  # the job's: noise of the samplers that add some per step


class Reporter:
    """Calls the step callback, attaching the latent to preview only when a preview was asked for."""

    def __init__(self, callback: Optional[StepCallback], total: int, preview: bool) -> None:
        self.callback, self.total, self.preview = callback, total, preview

    def __call__(self, info: StepInfo, latent: torch.Tensor) -> None:
        if self.callback is not None:
            if self.preview:
                info.preview_latent = latent
            self.callback(info)


def check_cancel(should_cancel: Optional[CancelCheck]) -> None:
    if should_cancel is not None and should_cancel():
        raise GenerationCancelled()
