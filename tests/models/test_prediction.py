"""v-prediction / zero-terminal-SNR models: detection from checkpoint keys, the forced option, the
scheduler configs every sampler gets, guidance rescale, and a tiny generation with v-prediction."""
from __future__ import annotations

import argparse
import dataclasses
from types import SimpleNamespace

import pytest
import torch

from backend.cli.model_options import add_model_arguments, load_options
from backend.models import prediction, tiny
from backend.models.loading import LoadOptions, load_bundle, scheduler_config_for
from backend.models.prediction import EPSILON, V_PREDICTION, Prediction
from backend.models.weight_files import load_tensors, read_header, save_tensors
from backend.pipeline.layerfusion import LayerFusionPipeline
from backend.pipeline.schedulers import make_scheduler
from shared.protocol import MethodOptions, Sampler

UNET_KEY = "model.diffusion_model.input_blocks.0.0.weight"
SDXL_SCHEDULER = dict(tiny.SCHEDULER_CONFIG)  # SDXL's: epsilon, "leading" spacing


# --- detection and resolution (no model) ------------------------------------------------------------

@pytest.mark.parametrize("names, expected", [
    ({UNET_KEY}, None),
    ({UNET_KEY, "v_pred"}, Prediction(V_PREDICTION, False)),
    ({UNET_KEY, "v_pred", "ztsnr"}, Prediction(V_PREDICTION, True)),
    ({UNET_KEY, "ztsnr"}, Prediction(EPSILON, True)),
    # Only top-level markers count, not a tensor that merely ends with the word.
    ({UNET_KEY, "model.diffusion_model.v_pred"}, None),
])
def test_detect_from_tensor_names(names, expected):
    assert prediction.detect(names) == expected
    assert prediction.detect(dict.fromkeys(names)) == expected  # a header dict works the same


def test_bad_choice_is_a_clear_error():
    with pytest.raises(ValueError, match=r"prediction must be one of auto, epsilon, v_prediction; got 'v'"):
        prediction.check_choice("v")
    with pytest.raises(ValueError, match="prediction must be one of"):
        load_bundle(LoadOptions("tiny", prediction="vpred"))  # before any loading


def test_resolve_forced_choice_wins_then_markers_then_config():
    marked = Prediction(V_PREDICTION, True)
    assert prediction.resolve(SDXL_SCHEDULER, marked) == marked
    assert prediction.resolve(SDXL_SCHEDULER, None) == Prediction(EPSILON, False)
    assert prediction.resolve(SDXL_SCHEDULER, marked, "epsilon") == Prediction(EPSILON, False)
    assert prediction.resolve(SDXL_SCHEDULER, None, "v_prediction") == Prediction(V_PREDICTION, False)
    assert prediction.resolve(SDXL_SCHEDULER, marked, "v_prediction") == marked
    # A diffusers folder's own scheduler config (no markers) is honoured.
    folder = {**SDXL_SCHEDULER, "prediction_type": "v_prediction", "rescale_betas_zero_snr": True}
    assert prediction.resolve(folder, None) == Prediction(V_PREDICTION, True)
    config, chosen = scheduler_config_for({"scheduler_config": folder}, "auto")
    assert chosen == Prediction(V_PREDICTION, True) and config["timestep_spacing"] == "trailing"


def test_apply_sets_keys_and_trailing_spacing_only_for_zero_snr():
    v = prediction.apply(SDXL_SCHEDULER, Prediction(V_PREDICTION, False))
    assert (v["prediction_type"], v["rescale_betas_zero_snr"], v["timestep_spacing"]) == (V_PREDICTION, False, "leading")
    z = prediction.apply(SDXL_SCHEDULER, Prediction(V_PREDICTION, True))
    assert (z["rescale_betas_zero_snr"], z["timestep_spacing"]) == (True, "trailing")
    assert prediction.apply({**SDXL_SCHEDULER, "timestep_spacing": "linspace"},
                            Prediction(V_PREDICTION, True))["timestep_spacing"] == "linspace"
    assert SDXL_SCHEDULER["prediction_type"] == EPSILON  # a copy, the input is untouched
    assert prediction.guidance_rescale_for(v) == 0.7 and prediction.guidance_rescale_for(SDXL_SCHEDULER) == 0.0


@pytest.mark.parametrize("sampler", list(Sampler))
def test_every_sampler_carries_the_prediction(sampler):
    config = prediction.apply(SDXL_SCHEDULER, Prediction(V_PREDICTION, True))
    scheduler = make_scheduler(sampler, config)
    assert scheduler.config.prediction_type == V_PREDICTION
    assert scheduler.config.rescale_betas_zero_snr is True
    assert scheduler.config.timestep_spacing == "trailing"
    scheduler.set_timesteps(4)
    assert float(scheduler.timesteps[0]) == pytest.approx(999, abs=1)  # the schedule reaches t = T
    assert torch.isfinite(torch.as_tensor(scheduler.init_noise_sigma))


def test_cli_flag():
    parser = argparse.ArgumentParser()
    add_model_arguments(parser, default_model="tiny")
    assert load_options(parser.parse_args([])).prediction == "auto"
    assert load_options(parser.parse_args(["--prediction", "v_prediction"])).prediction == "v_prediction"
    with pytest.raises(SystemExit):
        parser.parse_args(["--prediction", "v"])


def test_guidance_rescale_by_hand():
    uncond = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]], [[[1.0, 1.0], [1.0, -1.0]]]])  # two rows (branches)
    text = torch.tensor([[[[1.0, 2.0], [0.0, 5.0]]], [[[0.0, 2.0], [1.0, 1.0]]]])
    cfg = uncond + 5.0 * (text - uncond)
    off = SimpleNamespace(cfg_rescale=0.0)
    assert torch.equal(LayerFusionPipeline._guide(off, uncond, text, 5.0), cfg)
    on = SimpleNamespace(cfg_rescale=0.7)
    got = LayerFusionPipeline._guide(on, uncond, text, 5.0)
    for row in range(2):  # per row: cfg scaled to the text prediction's std, mixed 0.7 / 0.3
        rescaled = cfg[row] * (text[row].std() / cfg[row].std())
        torch.testing.assert_close(got[row], 0.7 * rescaled + 0.3 * cfg[row])


# --- a marked tiny checkpoint through the loader ------------------------------------------------------

@pytest.fixture(scope="module")
def marked_checkpoint(tiny_files, tmp_path_factory):
    """The tiny single-file checkpoint plus the empty ``v_pred`` and ``ztsnr`` tensors NoobAI-style files carry."""
    tensors = load_tensors(tiny_files.checkpoint)
    tensors.update(v_pred=torch.empty(0), ztsnr=torch.empty(0))
    path = tmp_path_factory.mktemp("vpred") / "tiny_vpred.safetensors"
    save_tensors(tensors, path)
    return path


def test_marked_checkpoint_loads_with_v_prediction_and_zero_snr(marked_checkpoint, tiny_files):
    assert {"v_pred", "ztsnr"} <= set(read_header(marked_checkpoint))
    bundle = load_bundle(LoadOptions(str(marked_checkpoint)))
    config = bundle.scheduler_config
    assert config["prediction_type"] == V_PREDICTION and config["rescale_betas_zero_snr"] is True
    assert config["timestep_spacing"] == "trailing"
    assert bundle.sources["prediction"] == "v_prediction, zero terminal SNR"
    pipe = LayerFusionPipeline.from_bundle(bundle)
    assert pipe.cfg_rescale == 0.7 and pipe.scheduler.config.prediction_type == V_PREDICTION
    # The forced option overrides the markers; an unmarked file stays epsilon, or is forced to v.
    parts = {"scheduler_config": tiny.SCHEDULER_CONFIG,
             "prediction": prediction.detect(read_header(marked_checkpoint))}
    forced, _ = scheduler_config_for(parts, "epsilon")
    assert (forced["prediction_type"], forced["rescale_betas_zero_snr"]) == (EPSILON, False)
    plain = load_bundle(LoadOptions(str(tiny_files.checkpoint), prediction="v_prediction"))
    assert plain.scheduler_config["prediction_type"] == V_PREDICTION
    assert plain.scheduler_config["rescale_betas_zero_snr"] is False


# --- a generation ------------------------------------------------------------------------------------

def _generate(scheduler_config: dict, sampler: Sampler = Sampler.euler):
    bundle = dataclasses.replace(tiny.build_bundle(seed=0), scheduler_config=scheduler_config)
    pipe = LayerFusionPipeline.from_bundle(bundle)
    out = pipe("a glass of water", "a wooden table", "a glass of water on a wooden table", height=64, width=64,
               num_inference_steps=3, options=MethodOptions(sampler=sampler),
               generator=torch.Generator().manual_seed(7))
    return pipe, out


@pytest.mark.parametrize("sampler", list(Sampler))
def test_v_prediction_generation_runs_and_differs_from_epsilon(sampler):
    _, eps = _generate(dict(tiny.SCHEDULER_CONFIG), sampler)
    pipe, v = _generate(prediction.apply(tiny.SCHEDULER_CONFIG, Prediction(V_PREDICTION, True)), sampler)
    assert pipe.cfg_rescale == 0.7
    for name in ("foreground", "background", "blend"):
        a, b = getattr(eps, name), getattr(v, name)
        assert a.shape == b.shape and torch.isfinite(b).all()
        assert (a - b).abs().mean() > 1e-3, name
