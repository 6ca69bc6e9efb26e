"""The samplers a request can choose, built from the model's own scheduler config."""
from __future__ import annotations

from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

from shared.protocol import Sampler

# What a v-prediction / zero-terminal-SNR model needs every sampler to honour (backend.models.prediction).
PREDICTION_KEYS = ("prediction_type", "rescale_betas_zero_snr", "timestep_spacing")


def make_scheduler(sampler: Sampler, config: dict):
    """A fresh scheduler per call: schedulers keep per-run state (step index, solver history)."""
    if sampler is Sampler.euler:
        scheduler = EulerDiscreteScheduler.from_config(config)
    elif sampler is Sampler.dpmpp_2m_karras:
        scheduler = DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True
        )
    else:
        raise ValueError(f"unknown sampler {sampler}")
    # ``from_config`` drops keys a class does not know without a word; a sampler that lost the prediction
    # type would denoise a v-prediction model as epsilon and paint garbage, so refuse instead.
    for key in PREDICTION_KEYS:
        if key in config and scheduler.config.get(key) != config[key]:
            raise ValueError(f"sampler {sampler.value} does not support {key}={config[key]!r}")
    return scheduler


def nearest_step(timesteps, target: float) -> int:
    """Index of the scheduled timestep nearest ``target`` (e.g. 0.8 T)."""
    distances = [abs(float(t) - target) for t in timesteps]
    return distances.index(min(distances))
