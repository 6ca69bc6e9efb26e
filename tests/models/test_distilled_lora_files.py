"""The step-distilled SDXL LoRAs artists use (SDXL-Lightning, Hyper-SD, DMD2, LCM-LoRA), written for the
tiny model in the layout the published files have, under their published names: listed with the right
format and base, given the right fast preset by name, and loaded through the real adapter path with
every layer of the file landing on its UNet layer."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backend.models import distilled
from backend.models.loras import LoraError, LoraLibrary, read_metadata
from backend.models.options import LoadOptions
from backend.models.tiny import build_bundle, build_components
from backend.models.tiny_loras import DISTILLED, DistilledFile, write_distilled
from backend.models.weight_files import load_tensors, read_header, save_tensors
from backend.pipeline.engine import Engine
from backend.pipeline.layerfusion import LayerFusionPipeline
from backend.pipeline.loras import LoraAdapters, adapter_layers
from shared.protocol import parse_job_request

# The PEFT target modules of diffusers' LCM-LoRA SDXL script and of DMD2's extract_lora_module.py.
PUBLISHED_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                     "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj")
# What each published name must select: (family, default steps, guidance).
PRESETS = {"sdxl_lightning_4step_lora.safetensors": ("lightning", 4, 1.0),
           "Hyper-SDXL-4steps-lora.safetensors": ("hyper", 4, 1.0),
           "Hyper-SDXL-8steps-CFG-lora.safetensors": ("hyper", 8, distilled.CFG_PRESERVING_GUIDANCE),
           "dmd2_sdxl_4step_lora.safetensors": ("dmd2", 4, 1.0),
           "dmd2_sdxl_4step_lora_fp16.safetensors": ("dmd2", 4, 1.0),
           "lcm-lora-sdxl/pytorch_lora_weights.safetensors": ("lcm", 4, 1.0)}
SAFETENSORS_DTYPES = {torch.float16: "F16", torch.float32: "F32"}
BASE = {"kind": "generate", "foreground_prompt": "a glass of water", "background_prompt": "a wooden table",
        "width": 64, "height": 64, "seed": 11}
SPECS = pytest.mark.parametrize("spec", DISTILLED, ids=[s.name for s in DISTILLED])


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("distilled")
    write_distilled(folder, build_components(seed=5))
    return folder


def _layers(path: Path) -> set[str]:
    """The kohya layer names a file holds (one down factor each)."""
    return {key.split(".", 1)[0] for key in read_header(path) if key.endswith(".lora_down.weight")}


def _targeted(unet: nn.Module) -> set[str]:
    """The kohya names of the UNet modules PEFT wraps for the published target list (suffix match)."""
    return {"lora_unet_" + name.replace(".", "_") for name, module in unet.named_modules()
            if isinstance(module, (nn.Linear, nn.Conv2d)) and any(name == t or name.endswith("." + t)
                                                                 for t in PUBLISHED_TARGETS)}


def test_every_published_file_is_written() -> None:
    assert set(PRESETS) == {spec.name for spec in DISTILLED}


@SPECS
def test_each_file_has_the_published_layout(lora_dir: Path, spec: DistilledFile) -> None:
    path = lora_dir / spec.name
    header = read_header(path)
    assert all(key.startswith("lora_unet_") for key in header)  # UNet only: no lora_te1_ / lora_te2_
    assert not any(word in key for key in header for word in ("input_blocks", "middle_block", "output_blocks"))
    assert {info.dtype for info in header.values()} == {SAFETENSORS_DTYPES[spec.dtype]}
    assert read_metadata(path) == spec.metadata
    for layer in _layers(path):
        assert {f"{layer}.lora_down.weight", f"{layer}.lora_up.weight", f"{layer}.alpha"} <= header.keys()
    # Diffusers' module names of exactly the layers the published target list selects.
    assert _layers(path) == _targeted(build_components(seed=5)["unet"])
    alphas = {float(v) for k, v in load_tensors(path).items() if k.endswith(".alpha")}
    assert alphas == {spec.alpha if spec.alpha is not None else 4.0}


@SPECS
def test_library_lists_each_with_its_format_base_and_fast_preset(lora_dir: Path, spec: DistilledFile) -> None:
    listed = {f.name: f for f in LoraLibrary([lora_dir]).list()}
    file = listed[spec.name]
    # kohya's prefix plus 4-D (convolution) factors: what this project calls a LyCORIS LoCon.
    assert (file.format, file.base, file.rank, file.problem) == ("lycoris", "tiny", 4, "")
    assert file.problem_for("tiny") == ""
    assert LoraLibrary([lora_dir]).find(spec.name.removesuffix(".safetensors")).path == lora_dir / spec.name
    fast = distilled.preset(spec.name)
    assert (fast.family, fast.default_steps, fast.guidance) == PRESETS[spec.name]
    assert fast.family == spec.family and fast.source == spec.name
    assert fast.sampler == distilled.FAMILIES[spec.family].sampler
    assert distilled.fast_steps_problem(fast, fast.default_steps) == ""


def _unet_inputs() -> dict:
    generator = torch.Generator().manual_seed(4)
    return dict(sample=torch.randn(1, 4, 16, 16, generator=generator), timestep=torch.tensor(500),
                encoder_hidden_states=torch.randn(1, 7, 64, generator=generator),
                added_cond_kwargs={"text_embeds": torch.randn(1, 32, generator=generator),
                                   "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])})


def _unet_output(unet: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return unet(**_unet_inputs()).sample


@SPECS
def test_each_file_loads_every_layer_and_changes_the_unet(lora_dir: Path, spec: DistilledFile) -> None:
    bundle = build_bundle(seed=0)
    pipe = LayerFusionPipeline.from_bundle(bundle)
    plain = _unet_output(bundle.unet)
    linear_name, conv_name = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", "up_blocks.1.resnets.0.conv1"
    bases = {name: copy.deepcopy(bundle.unet.get_submodule(name)) for name in (linear_name, conv_name)}
    adapters = LoraAdapters(pipe)
    file = LoraLibrary([lora_dir]).find(spec.name)
    adapters.activate([(file, 1.0)])
    (adapter,) = adapters._adapters.values()
    layers = len(_layers(file.path))
    assert adapter.layers == layers == adapter_layers(bundle.unet, adapter.name)  # none dropped, none extra
    assert adapter_layers(bundle.text_encoder, adapter.name) == adapter_layers(bundle.text_encoder_2, adapter.name) == 0
    changed = _unet_output(bundle.unet)
    assert (changed - plain).abs().max() > 1e-3

    # The math a kohya layer means: base + alpha / rank * up @ down, on a projection and a convolution.
    tensors = {k: v.float() for k, v in load_tensors(file.path).items()}
    generator = torch.Generator().manual_seed(2)
    for name, base in bases.items():
        key = "lora_unet_" + name.replace(".", "_")
        down, up = tensors[f"{key}.lora_down.weight"], tensors[f"{key}.lora_up.weight"]
        scale = tensors[f"{key}.alpha"].item() / down.shape[0]
        shape = (2, 5, base.in_features) if isinstance(base, nn.Linear) else (1, base.in_channels, 8, 8)
        x = torch.randn(shape, generator=generator)
        if down.dim() == 2:
            expected = F.linear(x, base.weight + scale * up @ down, base.bias)
        else:
            expected = base(x) + scale * F.conv2d(F.conv2d(x, down, padding=1), up)
        with torch.no_grad():
            torch.testing.assert_close(bundle.unet.get_submodule(name)(x), expected, rtol=1e-4, atol=1e-4)

    adapters.activate([])
    assert torch.equal(_unet_output(bundle.unet), plain)


def test_a_misnamed_layer_is_refused_not_silently_dropped(lora_dir: Path, tmp_path: Path) -> None:
    tensors = load_tensors(lora_dir / "dmd2_sdxl_4step_lora.safetensors")
    good = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    bad = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_z"
    for suffix in (".lora_down.weight", ".lora_up.weight", ".alpha"):
        tensors[bad + suffix] = tensors.pop(good + suffix)
    (tmp_path / "loras").mkdir()
    save_tensors(tensors, tmp_path / "loras" / "dmd2_sdxl_4step_lora.safetensors")
    file = LoraLibrary([tmp_path / "loras"]).find("dmd2_sdxl_4step_lora")
    bundle = build_bundle(seed=0)
    pipe = LayerFusionPipeline.from_bundle(bundle)
    plain = _unet_output(bundle.unet)
    with pytest.raises(LoraError, match="does not fit this model"):
        LoraAdapters(pipe).activate([(file, 1.0)])
    assert torch.equal(_unet_output(bundle.unet), plain)


@pytest.fixture(scope="module")
def engine(lora_dir: Path) -> Engine:
    engine = Engine(LoadOptions(model="tiny", device="cpu", lora_dirs=[str(lora_dir)], lora_cache=2))
    engine.load()
    return engine


def _images(result) -> dict[str, np.ndarray]:
    return {name: np.asarray(image) for name, image in result.images.items()}


def test_a_job_with_each_family_runs_and_paints_differently(engine: Engine) -> None:
    """Named as artists name them in a job (suffix left out, the LCM-LoRA by its folder)."""
    plain = _images(engine.run(parse_job_request({**BASE, "steps": 1})))
    for name in ("sdxl_lightning_4step_lora", "Hyper-SDXL-8steps-CFG-lora.safetensors", "dmd2_sdxl_4step_lora_fp16",
                 "lcm-lora-sdxl/pytorch_lora_weights"):
        result = engine.run(parse_job_request({**BASE, "steps": 1, "loras": [{"name": name}]}))
        painted = _images(result)
        assert painted.keys() == plain.keys()
        assert any(not np.array_equal(painted[k], plain[k]) for k in plain), name
        assert [entry["name"] for entry in result.params["loras"]] == [name]
