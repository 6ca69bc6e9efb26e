"""Speed 'fast': the distillation presets, their samplers on the tiny model (determinism, progress,
cancel), the prior step they land on, and the requests they refuse."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.models import distilled, tiny
from backend.models.options import LoadOptions
from backend.models.tiny import build_components
from backend.models.tiny_loras import write_lora
from backend.pipeline.engine import Engine
from backend.pipeline.progress import GenerationCancelled
from backend.pipeline.schedulers import make_scheduler, nearest_step
from shared.fields import ProtocolError, Unprocessable
from shared.protocol import Sampler, parse_job_request
from tests.pipeline.test_given_layers import b64, painting, square_layer

LIGHTNING = "sdxl_lightning_4step_lora.safetensors"
BASE = {"kind": "generate", "foreground_prompt": "a glass of water", "background_prompt": "a wooden table",
        "width": 64, "height": 64, "seed": 11}
FAST = {**BASE, "speed": "fast", "steps": 4}


# --- the presets (no model) -----------------------------------------------------------------------

@pytest.mark.parametrize("name,family,sampler,steps,guidance", [
    ("sdxl_lightning_4step_lora.safetensors", "lightning", Sampler.euler_trailing, 4, 1.0),
    ("sdxl_lightning_8step_lora.safetensors", "lightning", Sampler.euler_trailing, 8, 1.0),
    ("Hyper-SDXL-8steps-CFG-lora.safetensors", "hyper", Sampler.tcd, 8, 5.0),
    ("Hyper-SDXL-1step-lora.safetensors", "hyper", Sampler.tcd, 1, 1.0),
    ("dmd2_sdxl_4step_lora_fp16.safetensors", "dmd2", Sampler.lcm, 4, 1.0),
    ("lcm-lora-sdxl/pytorch_lora_weights.safetensors", "lcm", Sampler.lcm, 4, 1.0),
])
def test_a_published_name_says_the_distillation_and_its_steps(name, family, sampler, steps, guidance):
    preset = distilled.preset(name)
    assert (preset.family, preset.sampler, preset.default_steps, preset.guidance) == (family, sampler, steps, guidance)
    assert preset.min_steps <= steps <= preset.max_steps and preset.source == name


def test_a_name_that_says_nothing_needs_the_family_and_a_distilled_model_has_one():
    with pytest.raises(distilled.DistilledError, match="cannot tell which distillation"):
        distilled.preset("my_style.safetensors")
    assert distilled.preset("my_style.safetensors", "lightning").sampler is Sampler.euler_trailing
    turbo = distilled.preset(distilled.MODEL_SOURCE, "turbo")
    assert (turbo.sampler, turbo.default_steps, turbo.max_steps) == (Sampler.euler_ancestral_trailing, 1, 4)
    with pytest.raises(distilled.DistilledError, match="unknown distillation"):
        distilled.preset(distilled.MODEL_SOURCE, "quick")


def test_steps_outside_the_preset_are_named():
    preset = distilled.preset(LIGHTNING)
    assert distilled.fast_steps_problem(preset, 4) == "" and distilled.fast_steps_problem(preset, 1) == ""
    assert "runs 1 to 8 steps" in distilled.fast_steps_problem(preset, 25)


@pytest.mark.parametrize("sampler,steps,timesteps,prior", [
    # Hand-computed: trailing spacing of 1000 training steps, and LCM's skipping of 50 original steps.
    (Sampler.euler_trailing, 4, [999, 749, 499, 249], 1),
    (Sampler.lcm, 4, [999, 759, 499, 259], 1),
    (Sampler.tcd, 8, [999, 879, 759, 639, 499, 379, 259, 139], 2),
    # With 1-2 steps the step nearest 0.8 T is the first one, t = 999: the priors are read where a
    # distilled model decides the whole layout in its first call.
    (Sampler.euler_trailing, 2, [999, 499], 0),
    (Sampler.euler_ancestral_trailing, 1, [999], 0),
])
def test_the_prior_pass_lands_on_the_step_nearest_0_8_t(sampler, steps, timesteps, prior):
    scheduler = make_scheduler(sampler, tiny.SCHEDULER_CONFIG)
    scheduler.set_timesteps(steps)
    assert [int(t) for t in scheduler.timesteps] == timesteps
    assert nearest_step(scheduler.timesteps, 0.8 * 1000) == prior


# --- jobs on the tiny model -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def fast_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fast-loras")
    parts = build_components(seed=5)
    for seed, name in enumerate((LIGHTNING, "Hyper-SDXL-4steps-lora.safetensors", "dmd2_sdxl_4step_lora.safetensors",
                                 "turbo_like_lora.safetensors")):
        write_lora(folder / name, "kohya", parts, seed=seed, text_encoders=False)
    return folder


@pytest.fixture(scope="module")
def fast_engine(fast_dir: Path) -> Engine:
    engine = Engine(LoadOptions(model="tiny", device="cpu", lora_dirs=[str(fast_dir)], fast_lora=LIGHTNING))
    engine.load()
    return engine


def _images(result) -> dict[str, np.ndarray]:
    return {name: np.asarray(image) for name, image in result.images.items()}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_fast_job_runs_the_preset_and_says_so(fast_engine: Engine):
    assert fast_engine.fast is not None and fast_engine.fast.family == "lightning"
    seen = []
    result = fast_engine.run(parse_job_request(FAST), on_step=lambda u: seen.append((u.step, u.total, u.phase)))
    params = result.params
    assert params["speed"] == "fast" and params["guidance"] == 1.0
    assert params["options"]["sampler"] == "euler_trailing"
    assert params["fast_preset"]["source"] == LIGHTNING
    # The prior pass to t = 749 (index 1: two calls), then four joint steps.
    assert params["prior_step"] == 1 and params["unet_steps"] == 2 + 4
    assert [s for s, _, _ in seen] == list(range(1, 7)) and {t for _, t, _ in seen} == {6}
    assert [p for _, _, p in seen] == ["prior"] * 2 + ["denoise"] * 4
    quality = fast_engine.run(parse_job_request({**BASE, "steps": 4}))
    assert not _same(_images(result), _images(quality))


@pytest.mark.parametrize("lora", [LIGHTNING, "Hyper-SDXL-4steps-lora.safetensors",
                                  "dmd2_sdxl_4step_lora.safetensors", "turbo_like_lora.safetensors"])
def test_every_distilled_sampler_is_deterministic_for_a_seed(fast_engine: Engine, lora: str):
    body = {**FAST, "fast_lora": lora, "steps": 3 if "turbo" in lora else 4}
    first, second = (fast_engine.run(parse_job_request(body)) for _ in range(2))
    assert _same(_images(first), _images(second))
    other = fast_engine.run(parse_job_request({**body, "seed": 12}))
    assert not _same(_images(first), _images(other))
    assert first.params["options"]["sampler"] == distilled.preset(lora).sampler.value


@pytest.mark.parametrize("lora", [LIGHTNING, "dmd2_sdxl_4step_lora.safetensors", "Hyper-SDXL-4steps-lora.safetensors"])
def test_a_fast_reblend_is_deterministic_and_runs_strength_times_steps(fast_engine: Engine, lora: str):
    body = {"kind": "reblend", "foreground_prompt": "a red box", "background_prompt": "a meadow",
            "foreground_png": b64(square_layer(10, 10, size=64)), "background_png": b64(painting(64)),
            "strength": 0.5, "seed": 3, "speed": "fast", "steps": 4, "fast_lora": lora}
    seen = []
    first = fast_engine.run(parse_job_request(body), on_step=lambda u: seen.append(u.step))
    assert seen == [1, 2] and first.params["unet_steps"] == 2
    assert _same(_images(first), _images(fast_engine.run(parse_job_request(body))))


def test_a_fast_job_cancels_within_one_step(fast_engine: Engine):
    steps = []

    def cancelled() -> bool:
        return len(steps) >= 3

    with pytest.raises(GenerationCancelled):
        fast_engine.run(parse_job_request(FAST), on_step=lambda u: steps.append(u.step), cancelled=cancelled)
    assert steps == [1, 2, 3]
    assert _same(_images(fast_engine.run(parse_job_request(FAST))), _images(fast_engine.run(parse_job_request(FAST))))


# --- what is refused --------------------------------------------------------------------------------

def _field(engine: Engine, body: dict) -> str:
    with pytest.raises(Unprocessable) as err:
        engine.check(parse_job_request(body))
    return err.value.field


def test_bad_fast_requests_name_the_field(fast_engine: Engine, fast_dir: Path):
    assert _field(fast_engine, {**FAST, "steps": 25}) == "steps"
    assert _field(fast_engine, {**FAST, "fast_lora": "sdxl_lightning_2step_missing.safetensors"}) == "fast_lora"
    assert _field(fast_engine, {**FAST, "fast_lora": "my_style.safetensors"}) == "fast_lora"
    plain = Engine(LoadOptions(model="tiny", device="cpu", lora_dirs=[str(fast_dir)]))
    assert _field(plain, FAST) == "speed"
    missing = Engine(LoadOptions(model="tiny", device="cpu", fast_lora="sdxl_lightning_4step_gone.safetensors"))
    assert _field(missing, FAST) == "speed"
    with pytest.raises(ProtocolError) as err:
        parse_job_request({**BASE, "speed": "quick"})
    assert err.value.field == "speed"
    with pytest.raises(ProtocolError) as err:
        parse_job_request({**BASE, "fast_lora": LIGHTNING})
    assert err.value.field == "fast_lora"
