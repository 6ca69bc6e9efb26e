"""What the pipeline reports after each denoising step, and how it is stopped between steps."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


class GenerationCancelled(Exception):
    """The caller's ``should_cancel()`` turned true; raised between two denoising steps."""


@dataclass
class StepInfo:
    step: int  # steps done, counting the prior pass
    total: int
    phase: str  # "prior" or "denoise"
    timestep: int
    # The current estimate of the clean latent of the branch worth previewing ([4, h, w]), if any.
    preview_latent: torch.Tensor | None = None


StepCallback = Callable[[StepInfo], None]
CancelCheck = Callable[[], bool]
