"""LoRAs folded into the UNet's weights while jobs ask for the same ones: the folded layer is W + s B A
by hand, the picture is the adapters' picture, and restoring gives back the very same weights."""
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
from backend.models.tiny_loras import write_lora
from backend.models.weight_files import load_tensors
from backend.pipeline.engine import Engine
from backend.pipeline.layerfusion import LayerFusionPipeline
from backend.pipeline.lora_fusion import FoldedLoras, wrapped_layers
from backend.pipeline.loras import LoraAdapters
from shared.protocol import parse_job_request

BASE = {"kind": "generate", "foreground_prompt": "a glass of water", "background_prompt": "a wooden table",
        "width": 64, "height": 64, "steps": 3, "seed": 11}
LINEAR = ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
          "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q")
CONV = ("down_blocks.0.resnets.1.conv1", "lora_unet_input_blocks_2_0_in_layers_2")


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fold-loras")
    parts = build_components(seed=5)
    write_lora(folder / "locon.safetensors", "lycoris", parts, seed=2)
    write_lora(folder / "second.safetensors", "kohya", parts, seed=9, rank=2, alpha=None)
    return folder


def _unet_weights(bundle) -> dict[str, torch.Tensor]:
    """The UNet's own weights by their names before PEFT wrapped any layer."""
    return {name.replace(".base_layer", ""): value.detach().clone()
            for name, value in bundle.unet.state_dict().items() if "lora_" not in name}


def _triplet(pipe):
    return pipe("a glass", "a table", "a glass, a table", height=64, width=64, num_inference_steps=3,
                guidance_scale=5.0, generator=torch.Generator().manual_seed(3))


def test_a_folded_layer_is_its_weight_plus_strength_times_alpha_over_rank_times_up_down(lora_dir: Path) -> None:
    bundle = build_bundle(seed=0)
    pipe = LayerFusionPipeline.from_bundle(bundle)
    linear, conv = (copy.deepcopy(bundle.unet.get_submodule(name)) for name, _ in (LINEAR, CONV))
    before = _unet_weights(bundle)
    adapters = LoraAdapters(pipe, fold=True)
    lora = LoraLibrary([lora_dir]).find("locon")
    adapters.activate([(lora, 0.7)])
    assert adapters.folded
    adapters.activate([(lora, 0.7)])  # the same choice again: nothing to do
    assert adapters.folded
    tensors = load_tensors(lora_dir / "locon.safetensors")

    def scaled(key: str):
        down, up = tensors[f"{key}.lora_down.weight"], tensors[f"{key}.lora_up.weight"]
        return down, up, 0.7 * tensors[f"{key}.alpha"].item() / down.shape[0]

    down, up, scale = scaled(LINEAR[1])
    folded = bundle.unet.get_submodule(LINEAR[0]).base_layer.weight
    torch.testing.assert_close(folded, linear.weight + scale * up @ down, rtol=0, atol=1e-6)
    down, up, scale = scaled(CONV[1])
    x = torch.randn(1, 32, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # the wrapper runs its base layer alone now: the sum is in the weight
        got = bundle.unet.get_submodule(CONV[0])(x)
    torch.testing.assert_close(got, conv(x) + scale * F.conv2d(F.conv2d(x, down, padding=1), up), rtol=1e-5, atol=1e-5)
    adapters.activate([])
    assert not adapters.folded
    after = _unet_weights(bundle)
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], before[name]) for name in before)  # bit for bit, not W + d - d


def test_the_folded_picture_is_the_adapters_picture_and_a_change_unfolds(lora_dir: Path) -> None:
    bundle = build_bundle(seed=0)
    pipe = LayerFusionPipeline.from_bundle(bundle)
    plain = _triplet(pipe)
    library = LoraLibrary([lora_dir])
    choice = [(library.find("locon"), 0.8), (library.find("second"), -0.5)]
    adapters = LoraAdapters(pipe, fold=False)
    adapters.activate(choice)
    assert not adapters.folded
    adapted = _triplet(pipe)
    adapters.fold = True
    adapters.activate(choice)
    assert adapters.folded
    folded = _triplet(pipe)
    for name in ("foreground", "background", "blend"):
        torch.testing.assert_close(getattr(folded, name), getattr(adapted, name), rtol=0, atol=2e-4)
        assert (getattr(folded, name) - getattr(plain, name)).abs().max() > 1e-2, name
    adapters.activate(choice[:1])  # another choice: unfolded, then folded anew
    assert adapters.folded and adapters.active == (("locon.safetensors", 0.8),)
    alone = _triplet(pipe)
    assert (alone.blend - folded.blend).abs().max() > 1e-2
    adapters.fold = False
    adapters.activate(choice[:1])  # the folded choice, now asked as adapters: unfolded
    assert not adapters.folded
    adapters.activate(choice)
    assert not adapters.folded
    torch.testing.assert_close(_triplet(pipe).blend, adapted.blend, rtol=0, atol=0)
    adapters.activate([])
    assert torch.equal(_triplet(pipe).blend, plain.blend)


def test_a_layer_that_cannot_be_folded_leaves_every_weight_and_adapter_as_it_was(lora_dir: Path) -> None:
    bundle = build_bundle(seed=0)
    pipe = LayerFusionPipeline.from_bundle(bundle)
    adapters = LoraAdapters(pipe, fold=False)
    lora = LoraLibrary([lora_dir]).find("second")
    adapters.activate([(lora, 1.0)])
    adapted = _triplet(pipe)
    adapters.fold = True
    (name,) = [adapter.name for adapter in adapters._adapters.values()]
    module, _ = wrapped_layers(bundle.unet, [name])[-1]
    module.lora_bias[name] = True  # as a LoRA with bias terms would be: not W + s B A alone
    before = _unet_weights(bundle)
    assert not FoldedLoras(bundle.unet).fold([name])
    adapters.activate([(lora, 1.0)])
    assert not adapters.folded
    assert all(torch.equal(value, before[key]) for key, value in _unet_weights(bundle).items())
    assert torch.equal(_triplet(pipe).blend, adapted.blend)


def _images(result) -> dict[str, np.ndarray]:
    return {name: np.asarray(image) for name, image in result.images.items()}


def test_the_engine_folds_every_job_of_a_choice_alike_and_only_when_allowed(lora_dir: Path) -> None:
    request = parse_job_request({**BASE, "loras": [{"name": "locon", "strength": 0.9}]})
    runs = {}
    for fold in (True, False, None):  # None: by the device, and on the CPU the copy would share the memory
        engine = Engine(LoadOptions(model="tiny", device="cpu", lora_dirs=[str(lora_dir)], lora_fold=fold))
        runs[fold] = [_images(engine.run(request)) for _ in range(2)]
        assert engine._adapters is not None and engine._adapters.folded is bool(fold)
    runs.pop(None)
    for first, second in runs.values():  # a seed gives the same bytes from the first job on
        assert all(np.array_equal(first[name], second[name]) for name in first)
    folded, adapted = runs[True][0], runs[False][0]
    for name in folded:  # folding rounds differently, by a level at most
        assert np.abs(folded[name].astype(int) - adapted[name].astype(int)).max() <= 1, name


@pytest.mark.parametrize("flag, expected", [([], None), (["--lora-fold"], True), (["--no-lora-fold"], False)])
def test_the_command_line_says_whether_to_fold(flag: list[str], expected) -> None:
    import argparse

    from backend.cli.model_options import add_model_arguments, load_options

    parser = argparse.ArgumentParser()
    add_model_arguments(parser, "tiny")
    assert load_options(parser.parse_args(flag)).lora_fold is expected
