"""The samplers a request can choose, built from the model's own scheduler config."""
from __future__ import annotations

from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

from shared.protocol import Sampler


def make_scheduler(sampler: Sampler, config: dict):
    """A fresh scheduler per call: schedulers keep per-run state (step index, solver history)."""
    if sampler is Sampler.euler:
        return EulerDiscreteScheduler.from_config(config)
    if sampler is Sampler.dpmpp_2m_karras:
        return DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True
        )
    raise ValueError(f"unknown sampler {sampler}")


def nearest_step(timesteps, target: float) -> int:
    """Index of the scheduled timestep nearest ``target`` (e.g. 0.8 T)."""
    distances = [abs(float(t) - target) for t in timesteps]
    return distances.index(min(distances))
