"""The one object the server's worker and the command line drive: a loaded model that runs jobs.

Not thread-safe by design: exactly one worker owns an Engine and calls ``load`` and ``run`` from its
own thread. ``check`` is cheap and may be called from anywhere, before or after loading.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from PIL import Image

from shared.protocol import MAX_SEED, JobRequest


class JobCancelled(Exception):
    """Raised by ``Engine.run`` when ``cancelled()`` turned true; checked between denoising steps."""


@dataclass
class StepUpdate:
    step: int
    total: int
    preview: Optional[Image.Image] = None


@dataclass
class JobResult:
    """``images``: 'foreground' (RGBA), 'background' (RGB) and, unless blend is none, 'blend' (RGB).
    ``params``: every parameter as run (seed resolved, model, device, timings), no image payloads."""

    images: dict[str, Image.Image]
    params: dict[str, Any] = field(default_factory=dict)


def resolve_seed(seed: Optional[int]) -> int:
    return random.SystemRandom().randint(0, MAX_SEED) if seed is None else seed


StepCallback = Callable[[StepUpdate], None]
CancelCheck = Callable[[], bool]


class Engine:
    """Placeholder contract; the implementation lands with the pipeline (issue 2)."""

    def __init__(self, model: str = "tiny", *, device: Optional[str] = None, models_dir: Optional[str] = None):
        self.model = model
        self.device_request = device
        self.models_dir = models_dir

    def load(self) -> None:
        raise NotImplementedError

    def check(self, request: JobRequest) -> None:
        raise NotImplementedError

    def run(
        self,
        request: JobRequest,
        *,
        on_step: Optional[StepCallback] = None,
        cancelled: Optional[CancelCheck] = None,
        preview: bool = False,
    ) -> JobResult:
        raise NotImplementedError
