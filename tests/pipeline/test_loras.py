"""LoRAs on the tiny model: each file format reaches the UNet and both text encoders with the math a
LoRA means, LayerDiffuse's offsets stay on top for the foreground rows, and switching per job never
leaks one job's LoRAs into the next."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backend.models.loras import LoraLibrary
from backend.models.options import LoadOptions
from backend.models.tiny import build_bundle, build_components
from backend.models.tiny_loras import FORMATS, write_lora
from backend.models.weight_files import load_tensors
from backend.pipeline.engine import Engine
from backend.pipeline.layerfusion import LayerFusionPipeline
from backend.pipeline.loras import LoraAdapters, adapter_layers
from shared.fields import Unprocessable
from shared.protocol import parse_job_request

BASE = {"kind": "generate", "foreground_prompt": "a glass of water", "background_prompt": "a wooden table",
        "width": 64, "height": 64, "steps": 3, "seed": 11}
TEXT_LAYERS_PER_ENCODER = 3 * 6  # three CLIP layers: q, k, v, out, fc1, fc2


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    parts = build_components(seed=5)
    for fmt in FORMATS:
        write_lora(folder / f"{fmt}.safetensors", fmt, parts, seed=FORMATS.index(fmt))
    write_lora(folder / "style" / "second.safetensors", "kohya", parts, seed=9, rank=2, alpha=None)
    return folder


@pytest.fixture()
def fresh():
    """A pipeline of its own: PEFT wraps layers in place, so LoRA tests never share the session's."""
    bundle = build_bundle(seed=0)
    return bundle, LayerFusionPipeline.from_bundle(bundle)


def _modules(bundle, component: str, name: str):
    return getattr(bundle, component).get_submodule(name)


def test_kohya_layer_is_base_plus_strength_times_alpha_over_rank_times_up_down(fresh, lora_dir: Path) -> None:
    bundle, pipe = fresh
    library = LoraLibrary([lora_dir])
    tensors = load_tensors(lora_dir / "kohya.safetensors")
    # Hand-picked kohya names of the tiny UNet (down block 1 is ldm input_blocks 4) and CLIP-G.
    cases = [("unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
              "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q", (2, 9, 64)),
             ("unet", "up_blocks.0.attentions.2.transformer_blocks.1.ff.net.2",
              "lora_unet_output_blocks_2_1_transformer_blocks_1_ff_net_2", (2, 9, 256)),
             ("text_encoder_2", "text_model.encoder.layers.1.mlp.fc1",
              "lora_te2_text_model_encoder_layers_1_mlp_fc1", (2, 5, 32))]
    before = {}
    for component, name, _, shape in cases:
        base = copy.deepcopy(_modules(bundle, component, name))
        before[name] = (base, torch.randn(shape, generator=torch.Generator().manual_seed(1)))
    LoraAdapters(pipe).activate([(library.find("kohya"), 0.75)])
    for component, name, key, _ in cases:
        base, x = before[name]
        down, up = tensors[f"{key}.lora_down.weight"], tensors[f"{key}.lora_up.weight"]
        scale = 0.75 * tensors[f"{key}.alpha"].item() / down.shape[0]  # alpha 2, rank 4
        expected = F.linear(x, base.weight + scale * up @ down, base.bias)
        with torch.no_grad():
            got = _modules(bundle, component, name)(x)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_locon_convolution_is_the_conv_of_down_then_up(fresh, lora_dir: Path) -> None:
    bundle, pipe = fresh
    name, key = "down_blocks.0.resnets.1.conv1", "lora_unet_input_blocks_2_0_in_layers_2"
    base = copy.deepcopy(_modules(bundle, "unet", name))
    x = torch.randn(1, 32, 8, 8, generator=torch.Generator().manual_seed(2))
    LoraAdapters(pipe).activate([(LoraLibrary([lora_dir]).find("lycoris"), 1.0)])
    tensors = load_tensors(lora_dir / "lycoris.safetensors")
    down, up = tensors[f"{key}.lora_down.weight"], tensors[f"{key}.lora_up.weight"]
    scale = tensors[f"{key}.alpha"].item() / down.shape[0]
    expected = base(x) + scale * F.conv2d(F.conv2d(x, down, padding=1), up)
    with torch.no_grad():
        torch.testing.assert_close(_modules(bundle, "unet", name)(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reaches_the_unet_and_both_text_encoders(fresh, lora_dir: Path, fmt: str) -> None:
    bundle, pipe = fresh
    unet_linears = sum(1 for n, m in bundle.unet.named_modules()
                       if isinstance(m, torch.nn.Linear) and ".attentions." in n)
    adapters = LoraAdapters(pipe)
    adapters.activate([(LoraLibrary([lora_dir]).find(fmt), 1.0)])
    (adapter,) = adapters._adapters.values()
    counts = [adapter_layers(getattr(bundle, c), adapter.name) for c in ("unet", "text_encoder", "text_encoder_2")]
    assert counts[1:] == [TEXT_LAYERS_PER_ENCODER] * 2
    assert counts[0] > unet_linears if fmt == "lycoris" else counts[0] == unet_linears


def _triplet(pipe, seed: int = 3):
    return pipe("a glass", "a table", "a glass, a table", height=64, width=64, num_inference_steps=3,
                guidance_scale=5.0, generator=torch.Generator().manual_seed(seed))


def test_adapters_equal_the_lora_merged_into_the_weights_by_hand_with_layerdiffuse_on_top(lora_dir: Path) -> None:
    """PEFT file: keys are module paths, alpha = rank. Every branch (foreground rows with LayerDiffuse's
    offsets, background, blend) must match a model whose weights hold W + s B A."""
    strength = 0.6
    merged = build_bundle(seed=0)
    with torch.no_grad():
        for key, a in load_tensors(lora_dir / "peft.safetensors").items():
            if key.endswith("lora_A.weight"):
                component, path = key.split(".", 1)
                b = load_tensors(lora_dir / "peft.safetensors")[key.replace("lora_A", "lora_B")]
                getattr(merged, component).get_submodule(path.removesuffix(".lora_A.weight")).weight += strength * b @ a
    reference = _triplet(LayerFusionPipeline.from_bundle(merged))
    bundle = build_bundle(seed=0)
    pipe = LayerFusionPipeline.from_bundle(bundle)
    plain = _triplet(pipe)
    LoraAdapters(pipe).activate([(LoraLibrary([lora_dir]).find("peft.safetensors"), strength)])
    ours = _triplet(pipe)
    for name in ("foreground", "background", "blend"):
        torch.testing.assert_close(getattr(ours, name), getattr(reference, name), rtol=0, atol=2e-4)
        assert (getattr(ours, name) - getattr(plain, name)).abs().max() > 1e-2, name


@pytest.fixture(scope="module")
def lora_engine(lora_dir: Path) -> Engine:
    engine = Engine(LoadOptions(model="tiny", device="cpu", lora_dirs=[str(lora_dir)], lora_cache=2))
    engine.load()
    return engine


def _images(result) -> dict[str, np.ndarray]:
    return {name: np.asarray(image) for name, image in result.images.items()}


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_job_without_loras_after_jobs_with_them_equals_a_fresh_run(lora_engine: Engine, lora_dir: Path) -> None:
    fresh = _images(Engine(LoadOptions(model="tiny", device="cpu")).run(parse_job_request(BASE)))
    with_two = lora_engine.run(parse_job_request({**BASE, "loras": [{"name": "kohya.safetensors", "strength": 0.8},
                                                                     {"name": "style/second", "strength": -0.5}]}))
    assert not _same(_images(with_two), fresh)
    assert with_two.params["loras"] == [{"name": "kohya.safetensors", "strength": 0.8},
                                        {"name": "style/second", "strength": -0.5}]
    assert _same(_images(lora_engine.run(parse_job_request(BASE))), fresh)
    zero = lora_engine.run(parse_job_request({**BASE, "loras": [{"name": "peft.safetensors", "strength": 0.0}]}))
    assert _same(_images(zero), fresh)
    # Back to the first pair, from the cache: the same picture as when it was loaded.
    again = lora_engine.run(parse_job_request({**BASE, "loras": [{"name": "kohya.safetensors", "strength": 0.8},
                                                                  {"name": "style/second", "strength": -0.5}]}))
    assert _same(_images(again), _images(with_two))


def test_the_cache_keeps_at_most_its_capacity_and_reloads_a_changed_file(lora_engine: Engine, tmp_path: Path) -> None:
    adapters = lora_engine._adapters
    assert adapters is not None
    for name in ("kohya.safetensors", "diffusers.safetensors", "lycoris.safetensors"):
        lora_engine.run(parse_job_request({**BASE, "steps": 1, "loras": [{"name": name}]}))
        assert adapters.loaded[-1] == name and len(adapters.loaded) <= 2
    assert "kohya.safetensors" not in adapters.loaded
    unet = lora_engine.bundle.unet
    assert {n for m in unet.modules() for n in (getattr(m, "lora_A", None) or {})} == {
        a.name for a in adapters._adapters.values()}  # evicted adapters left no layers behind


def test_bad_loras_fail_before_any_work_and_the_next_job_runs(lora_engine: Engine, lora_dir: Path) -> None:
    fresh = _images(lora_engine.run(parse_job_request(BASE)))
    sd15 = lora_dir / "sd15.safetensors"
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    from backend.models.weight_files import save_tensors

    save_tensors({f"{key}.lora_down.weight": torch.zeros(4, 768), f"{key}.lora_up.weight": torch.zeros(32, 4)}, sd15)
    for loras, field, words in (
            ([{"name": "missing"}], "loras[0].name", "no LoRA named 'missing'"),
            ([{"name": "kohya.safetensors"}, {"name": "sd15.safetensors"}], "loras[1].name", "trained for SD 1.5")):
        request = parse_job_request({**BASE, "loras": loras})
        with pytest.raises(Unprocessable) as err:
            lora_engine.check(request)
        assert err.value.field == field and words in err.value.message
        with pytest.raises(Unprocessable):
            lora_engine.run(request)
    assert _same(_images(lora_engine.run(parse_job_request(BASE))), fresh)


def test_a_lora_that_passes_the_header_check_but_does_not_fit_leaves_the_model_as_it_was(
        lora_engine: Engine, lora_dir: Path) -> None:
    fresh = _images(lora_engine.run(parse_job_request(BASE)))
    tensors = load_tensors(lora_dir / "kohya.safetensors")
    key = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"
    tensors[f"{key}.lora_down.weight"] = torch.zeros(4, 48)  # the layer takes 64
    from backend.models.weight_files import save_tensors

    save_tensors(tensors, lora_dir / "misfit.safetensors")
    with pytest.raises(Unprocessable, match=r"'misfit.safetensors' does not fit this model: layer "
                                            r"'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q'") as err:
        lora_engine.run(parse_job_request({**BASE, "loras": [{"name": "misfit.safetensors"}]}))
    assert err.value.field == "loras[0].name"
    assert _same(_images(lora_engine.run(parse_job_request(BASE))), fresh)
