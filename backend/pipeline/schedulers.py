"""The samplers a request can choose, built from the model's own scheduler config."""
from __future__ import annotations

from typing import Any, Optional

import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    TCDScheduler,
)

from shared.protocol import Sampler

# What a v-prediction / zero-terminal-SNR model needs every sampler to honour (backend.models.prediction).
PREDICTION_KEYS = ("prediction_type", "rescale_betas_zero_snr")
# Zero-terminal-SNR models need trailing timesteps (their first step is at t = T); the distilled samplers
# use trailing timesteps whatever the model's config says, as they were distilled with them.
TRAILING = "trailing"


def make_scheduler(sampler: Sampler, config: dict):
    """A fresh scheduler per call: schedulers keep per-run state (step index, solver history)."""
    if sampler is Sampler.euler:
        scheduler = EulerDiscreteScheduler.from_config(config)
    elif sampler is Sampler.dpmpp_2m_karras:
        scheduler = DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True
        )
    elif sampler is Sampler.euler_trailing:
        scheduler = EulerDiscreteScheduler.from_config(config, timestep_spacing=TRAILING)
    elif sampler is Sampler.euler_ancestral_trailing:
        scheduler = EulerAncestralDiscreteScheduler.from_config(config, timestep_spacing=TRAILING)
    elif sampler is Sampler.lcm:
        scheduler = LCMScheduler.from_config(config)
    elif sampler is Sampler.tcd:
        scheduler = TCDScheduler.from_config(config)
    else:
        raise ValueError(f"unknown sampler {sampler}")
    # ``from_config`` drops keys a class does not know without a word; a sampler that lost the prediction
    # type would denoise a v-prediction model as epsilon and paint garbage, so refuse instead.
    for key in PREDICTION_KEYS:
        if key in config and scheduler.config.get(key) != config[key]:
            raise ValueError(f"sampler {sampler.value} does not support {key}={config[key]!r}")
    spacing = scheduler.config.get("timestep_spacing")
    if config.get("timestep_spacing") == TRAILING and spacing not in (TRAILING, None):
        raise ValueError(f"sampler {sampler.value} does not support timestep_spacing='trailing'")
    return scheduler


def scheduler_step(scheduler: Any, output: torch.Tensor, t: torch.Tensor, latents: torch.Tensor,
                   generator: Optional[torch.Generator]) -> torch.Tensor:
    """One step; the job's generator feeds the samplers that add noise (ancestral Euler, LCM, TCD), so
    a seed gives the same picture every time."""
    return scheduler.step(output, t, latents, generator=generator, return_dict=False)[0]


def nearest_step(timesteps, target: float) -> int:
    """Index of the scheduled timestep nearest ``target`` (e.g. 0.8 T)."""
    distances = [abs(float(t) - target) for t in timesteps]
    return distances.index(min(distances))
