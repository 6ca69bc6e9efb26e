"""What a model's UNet predicts (epsilon or v) and whether it was trained with zero terminal SNR.

v-prediction SDXL fine-tunes (NoobAI-XL v-pred, some Illustrious builds) are SDXL-shaped, so their
single-file checkpoints are told apart only by marker tensors at the top level: ``v_pred`` (an empty
tensor) and often ``ztsnr`` -- the convention ComfyUI reads. Diffusers folders and hub repos say the same
in ``scheduler/scheduler_config.json``. Sampling such a model with the epsilon scheduler paints garbage,
so the scheduler config the pipeline builds from must carry both facts.

Kept free of torch: the CLI validates ``--prediction`` with it before anything heavy is imported.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional

EPSILON = "epsilon"
V_PREDICTION = "v_prediction"
AUTO = "auto"
CHOICES = (AUTO, EPSILON, V_PREDICTION)
# Top-level marker tensors of v-prediction / zero-terminal-SNR checkpoints.
V_PRED_KEY = "v_pred"
ZTSNR_KEY = "ztsnr"
# "Common Diffusion Noise Schedules and Sample Steps are Flawed" (Lin et al. 2023), section 3.4: with
# v-prediction and zero terminal SNR, plain CFG over-exposes; rescaling by 0.7 is the paper's value.
V_GUIDANCE_RESCALE = 0.7


@dataclass(frozen=True)
class Prediction:
    prediction_type: str = EPSILON
    zero_snr: bool = False

    def describe(self) -> str:
        return self.prediction_type + (", zero terminal SNR" if self.zero_snr else "")


def check_choice(value: str) -> str:
    """``value`` if it is a valid ``--prediction`` / ``LoadOptions.prediction``; a clear error otherwise."""
    if value not in CHOICES:
        raise ValueError(f"prediction must be one of {', '.join(CHOICES)}; got '{value}'")
    return value


def detect(names: Iterable[str]) -> Optional[Prediction]:
    """From a checkpoint's tensor names (its header): the prediction its markers say, or None when it has
    no marker (then the shipped SDXL scheduler config, epsilon, applies)."""
    keys = set(names)
    v_pred, zero_snr = V_PRED_KEY in keys, ZTSNR_KEY in keys
    if not (v_pred or zero_snr):
        return None
    # ``ztsnr`` alone is left as the file says; an epsilon model cannot predict at SNR 0 but we do not guess.
    return Prediction(V_PREDICTION if v_pred else EPSILON, zero_snr)


def from_config(config: dict[str, Any]) -> Prediction:
    """What a scheduler config already says (a diffusers folder's or repo's own)."""
    return Prediction(str(config.get("prediction_type", EPSILON)), bool(config.get("rescale_betas_zero_snr", False)))


def resolve(config: dict[str, Any], detected: Optional[Prediction], choice: str = AUTO) -> Prediction:
    """The prediction to sample with: a forced ``choice`` wins, then the checkpoint's markers, then the
    config. Forcing epsilon also drops zero SNR (an epsilon model has nothing to predict at SNR 0);
    forcing v keeps whatever zero-SNR flag the file or config has."""
    check_choice(choice)
    found = detected if detected is not None else from_config(config)
    if choice == EPSILON:
        return Prediction(EPSILON, False)
    if choice == V_PREDICTION:
        return Prediction(V_PREDICTION, found.zero_snr)
    return found


def apply(config: dict[str, Any], prediction: Prediction) -> dict[str, Any]:
    """A copy of the scheduler config carrying ``prediction``. With zero terminal SNR the schedule must
    reach t = T: SDXL's "leading" spacing starts at 951 of 1000, so it becomes "trailing", which
    diffusers recommends for such models ("linspace" already ends at T and is kept)."""
    out = dict(config)
    out["prediction_type"] = prediction.prediction_type
    out["rescale_betas_zero_snr"] = prediction.zero_snr
    if prediction.zero_snr and out.get("timestep_spacing", "leading") == "leading":
        out["timestep_spacing"] = "trailing"
    return out


def guidance_rescale_for(config: dict[str, Any]) -> float:
    """Guidance rescale for a scheduler config: on for v-prediction, off (0) for epsilon models, whose
    images it would only flatten."""
    return V_GUIDANCE_RESCALE if config.get("prediction_type") == V_PREDICTION else 0.0
