"""LoRA files: found in the artists' folder layouts, and told apart by format and base model from
their headers, with the refusals an artist can act on."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backend.models.loras import LoraError, LoraLibrary, describe, lora_folders
from backend.models.tiny import build_components
from backend.models.tiny_loras import FORMATS, write_lora
from backend.models.weight_files import save_tensors


@pytest.fixture(scope="module")
def components():
    return build_components()


def _kohya_cross_attention(path: Path, width: int, prefix: str = "lora_unet_down_blocks_0_attentions_0_") -> Path:
    """A two-layer kohya LoRA whose cross-attention key factor reads ``width``-wide text (SD1.5: 768)."""
    key = prefix + "transformer_blocks_0_attn2_to_k"
    save_tensors({f"{key}.lora_down.weight": torch.zeros(4, width), f"{key}.lora_up.weight": torch.zeros(320, 4),
                  f"{key}.alpha": torch.tensor(4.0)}, path)
    return path


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_written_format_is_recognised_as_a_tiny_sdxl_lora(tmp_path: Path, components, fmt: str) -> None:
    path = write_lora(tmp_path / f"{fmt}.safetensors", fmt, components, rank=3)
    file = describe(path, path.name)
    assert (file.format, file.base, file.rank, file.problem) == (fmt, "tiny", 3, "")
    assert file.problem_for("tiny") == ""
    assert "trained for the tiny test model" in file.problem_for("sdxl")


@pytest.mark.parametrize("width, base", [(768, "sd1"), (1024, "sd2"), (2048, "sdxl")])
def test_base_comes_from_the_cross_attention_width(tmp_path: Path, width: int, base: str) -> None:
    file = describe(_kohya_cross_attention(tmp_path / "x.safetensors", width), "x.safetensors")
    assert file.base == base
    if base == "sd1":
        message = file.problem_for("sdxl")
        assert "'x.safetensors' was trained for SD 1.5" in message and "needs SDXL LoRAs" in message


def test_metadata_names_the_base_when_no_cross_attention_layer_does(tmp_path: Path) -> None:
    key = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"
    tensors = {f"{key}.lora_down.weight": torch.zeros(4, 640), f"{key}.lora_up.weight": torch.zeros(640, 4)}
    save_tensors(tensors, tmp_path / "a.safetensors", metadata={"ss_base_model_version": "sdxl_base_v1-0"})
    save_tensors(tensors, tmp_path / "b.safetensors", metadata={"modelspec.architecture": "stable-diffusion-v1/lora"})
    assert describe(tmp_path / "a.safetensors", "a").base == "sdxl"
    assert describe(tmp_path / "b.safetensors", "b").base == "sd1"


@pytest.mark.parametrize("suffix, algorithm", [("hada_w1_a", "LoHa"), ("lokr_w1", "LoKr"), ("dora_scale", "DoRA")])
def test_algorithms_diffusers_cannot_apply_are_refused_by_name(tmp_path: Path, suffix: str, algorithm: str) -> None:
    key = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"
    save_tensors({f"{key}.{suffix}": torch.zeros(4, 2048), f"{key}.lora_down.weight": torch.zeros(4, 2048)},
                 tmp_path / "l.safetensors")
    file = describe(tmp_path / "l.safetensors", "l.safetensors")
    assert file.format == "unsupported"
    assert algorithm in file.problem and "LoCon" in file.problem
    assert file.problem_for("sdxl") == file.problem


def test_a_truncated_or_foreign_file_is_named_not_crashed_on(tmp_path: Path, components) -> None:
    path = write_lora(tmp_path / "cut.safetensors", "kohya", components)
    path.write_bytes(path.read_bytes()[:-100])
    assert "LoRA 'cut.safetensors' cannot be read" in describe(path, "cut.safetensors").problem
    assert "truncated" in describe(path, "cut.safetensors").problem
    save_tensors({"model.diffusion_model.out.2.weight": torch.zeros(4, 4)}, tmp_path / "ckpt.safetensors")
    assert "no LoRA tensors" in describe(tmp_path / "ckpt.safetensors", "ckpt.safetensors").problem


def test_folders_follow_comfyui_and_a1111_layouts_and_lora_dir_comes_first(tmp_path: Path, components) -> None:
    comfy, a1111, extra = tmp_path / "models" / "loras", tmp_path / "models" / "Lora", tmp_path / "mine"
    for folder in (comfy, a1111, extra):
        folder.mkdir(parents=True)
    write_lora(comfy / "styles" / "ink.safetensors", "kohya", components, seed=1)
    write_lora(a1111 / "char.safetensors", "peft", components, seed=2)
    write_lora(extra / "styles" / "ink.safetensors", "lycoris", components, seed=3)
    assert lora_folders(tmp_path / "models", [extra]) == [extra, comfy, a1111]
    library = LoraLibrary.from_options(tmp_path / "models", [extra])
    listed = {f.name: f for f in library.list()}
    assert sorted(listed) == ["char.safetensors", "styles/ink.safetensors"]
    assert listed["styles/ink.safetensors"].format == "lycoris"  # --lora-dir wins the name clash
    assert library.find("styles/ink").path == extra / "styles" / "ink.safetensors"  # the suffix may be left out
    assert library.find("char.safetensors").name == "char.safetensors"


def test_names_outside_the_folders_and_missing_names_are_refused(tmp_path: Path, components) -> None:
    (tmp_path / "loras").mkdir()
    write_lora(tmp_path / "secret.safetensors", "kohya", components)
    library = LoraLibrary.from_options(tmp_path)
    for name in ("../secret.safetensors", str(tmp_path / "secret.safetensors")):
        with pytest.raises(LoraError, match="not a path outside one"):
            library.find(name)
    with pytest.raises(LoraError, match=r"no LoRA named 'gone' \(looked in .*loras\)") as err:
        library.find("gone")
    assert err.value.name == "gone"
    with pytest.raises(LoraError, match="no LoRA folder"):
        LoraLibrary.from_options(None).find("gone")


@pytest.mark.parametrize("name", ["a" * 400, "x\x00y", "deep/" + "b" * 300])
def test_names_the_file_system_cannot_take_are_just_not_found(tmp_path: Path, name: str) -> None:
    (tmp_path / "loras").mkdir()
    with pytest.raises(LoraError, match="no LoRA named"):
        LoraLibrary.from_options(tmp_path).find(name)
