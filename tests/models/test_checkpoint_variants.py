"""Single-file checkpoints as they come in the wild (issue 11): no baked-in VAE, CLIP projections stored
another way, ``.ckpt`` pickles, and files of other model families (SDXL refiner, SD1.5).

Every variant is written from the tiny checkpoint's own tensors, in the real key layout, and loaded
through the production code path.
"""
from __future__ import annotations

import os

import pytest
import torch

from backend.models import catalog, ldm_names, single_file, validate
from backend.models.loading import LoadOptions, load_bundle
from backend.models.weight_files import WeightFileError, load_tensors, read_header, save_tensors


@pytest.fixture(scope="module")
def tensors(tiny_files) -> dict[str, torch.Tensor]:
    return load_tensors(tiny_files.checkpoint)


@pytest.fixture(scope="module")
def reference(tiny_files) -> dict[str, torch.nn.Module]:
    """The unmodified tiny checkpoint, loaded the ordinary way."""
    return single_file.load_single_file(tiny_files.checkpoint, tiny_files.configs)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def load(path, tiny_files) -> dict[str, torch.nn.Module]:
    return single_file.load_single_file(path, tiny_files.configs)


# 1. no VAE baked in


@pytest.fixture(scope="module")
def without_vae(tmp_path_factory, tensors):
    folder = tmp_path_factory.mktemp("no_vae")
    checkpoint = folder / "checkpoints" / "no_vae.safetensors"
    save_tensors({k: v for k, v in tensors.items() if not k.startswith(ldm_names.VAE_PREFIX)}, checkpoint)
    vae = folder / "vae" / "tiny_vae.safetensors"  # ComfyUI's vae/ files: original names, no prefix
    save_tensors({k[len(ldm_names.VAE_PREFIX):]: v for k, v in tensors.items() if k.startswith(ldm_names.VAE_PREFIX)},
                 vae)
    return checkpoint, vae


def test_checkpoint_without_vae_loads_with_a_vae_file(without_vae, reference):
    checkpoint, vae = without_vae
    bundle = load_bundle(LoadOptions(str(checkpoint), vae=str(vae)))
    assert same_weights(bundle.vae, reference["vae"]) and same_weights(bundle.unet, reference["unet"])
    assert bundle.sources["vae"] == str(vae)


def test_checkpoint_without_vae_and_no_vae_file_says_pass_vae(without_vae):
    checkpoint, _ = without_vae
    with pytest.raises(WeightFileError, match=r"no VAE baked in .*pass --vae FILE"):
        load_bundle(LoadOptions(str(checkpoint)))
    result = validate.check_file(checkpoint)
    assert result.model == "tiny" and "no VAE baked in" in result.note and "--vae" in result.note


def test_a_vae_file_replaces_a_baked_in_vae(tmp_path, tiny_files, tensors, reference):
    from backend.models import tiny

    other = tiny.build_components(9)["vae"]
    path = tmp_path / "other_vae.safetensors"
    save_tensors(other.state_dict(), path)  # diffusers layout
    loaded = single_file.load_single_file(tiny_files.checkpoint, tiny_files.configs, vae=path)
    assert same_weights(loaded["vae"], other) and same_weights(loaded["unet"], reference["unet"])


# 2. CLIP projections stored another way


def test_clip_g_projection_as_a_linear_weight(tmp_path, tiny_files, tensors, reference):
    variant = dict(tensors)
    projection = variant.pop(single_file.CLIP_G_PROJECTION)
    # ComfyUI's form: nn.Linear's weight, [out, in], the transpose of OpenCLIP's parameter
    variant[single_file.CLIP_G_PROJECTION_LINEAR] = projection.T.contiguous()
    path = tmp_path / "linear_projection.safetensors"
    save_tensors(variant, path)
    loaded = load(path, tiny_files)
    assert torch.equal(loaded["text_encoder_2"].text_projection.weight,
                       reference["text_encoder_2"].text_projection.weight)
    assert same_weights(loaded["text_encoder_2"], reference["text_encoder_2"])


def test_square_clip_g_projection_is_not_taken_the_wrong_way_round(tmp_path, tiny_files, tensors, reference):
    # SDXL's projection is square, so a missing transpose would pass every shape check.
    weight = reference["text_encoder_2"].text_projection.weight
    square = torch.randn(weight.shape[1], weight.shape[1], generator=torch.Generator().manual_seed(3))
    config = single_file.read_config(tiny_files.configs, "text_encoder_2")
    if weight.shape[0] != weight.shape[1]:
        pytest.skip(f"tiny projection is not square ({list(weight.shape)}); covered by the test above")
    variant = dict(tensors)
    variant.pop(single_file.CLIP_G_PROJECTION)
    variant[single_file.CLIP_G_PROJECTION_LINEAR] = square
    path = tmp_path / "square.safetensors"
    save_tensors(variant, path)
    assert config["projection_dim"] == square.shape[0]
    assert torch.equal(load(path, tiny_files)["text_encoder_2"].text_projection.weight, square)


def test_harmless_clip_l_projection_is_ignored(tmp_path, tiny_files, tensors, reference):
    hidden = reference["text_encoder"].config.hidden_size
    variant = dict(tensors)
    variant[ldm_names.CLIP_L_PREFIX + "text_projection.weight"] = torch.randn(hidden, hidden)
    path = tmp_path / "clip_l_projection.safetensors"
    save_tensors(variant, path)
    loaded = load(path, tiny_files)
    assert same_weights(loaded["text_encoder"], reference["text_encoder"])
    assert validate.check_file(path).model == "tiny"


def test_unknown_clip_l_extra_is_named_itself(tmp_path, tiny_files, tensors):
    variant = dict(tensors)
    variant[ldm_names.CLIP_L_PREFIX + "text_model.mystery_head.weight"] = torch.zeros(2, 2)
    path = tmp_path / "clip_l_extra.safetensors"
    save_tensors(variant, path)
    for attempt in (lambda: load(path, tiny_files), lambda: validate.check_file(path, "tiny")):
        with pytest.raises(WeightFileError, match=r"\[text_encoder\]: unexpected tensor 'mystery_head\.weight'"):
            attempt()


# 3. .ckpt pickles


def test_ckpt_loads_like_the_safetensors(tmp_path, tiny_files, tensors, reference):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    plain, wrapped, legacy = checkpoints / "plain.ckpt", checkpoints / "wrapped.ckpt", tmp_path / "legacy.ckpt"
    torch.save(dict(tensors), plain)
    # A1111 / Lightning training checkpoints: weights under "state_dict", next to counters
    torch.save({"state_dict": dict(tensors), "global_step": 1000, "epoch": 3}, wrapped)
    torch.save(dict(tensors), legacy, _use_new_zipfile_serialization=False)  # pre-1.6 format, no mmap
    assert read_header(plain) == read_header(tiny_files.checkpoint)
    for path in (plain, wrapped, legacy):
        loaded = load(path, tiny_files)
        for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
            assert same_weights(loaded[name], reference[name]), (path.name, name)
    # The catalog lists it, and the loader takes it by path like a .safetensors file.
    listed = {found.path.name: found.format for found in catalog.scan(tmp_path)}
    assert listed == {"plain.ckpt": "sdxl-original", "wrapped.ckpt": "sdxl-original"}
    assert validate.check_file(plain).model == "tiny"
    bundle = load_bundle(LoadOptions(str(wrapped)))
    assert same_weights(bundle.unet, reference["unet"])


class _RunsCode:
    """Unpickling this would run a shell command (what a malicious checkpoint does)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_ckpt_with_pickled_code_is_refused(tmp_path, tensors):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": dict(tensors), "payload": _RunsCode(str(marker))}, path)
    with pytest.raises(WeightFileError, match=r"evil\.ckpt: refused: .*Python objects other than tensors"):
        load_tensors(path)
    with pytest.raises(WeightFileError, match="refused"):
        load_bundle(LoadOptions(str(path)))
    assert not marker.exists()


def test_truncated_ckpt_says_so(tmp_path, tensors):
    path = tmp_path / "cut.ckpt"
    torch.save(dict(tensors), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightFileError, match="not a readable PyTorch checkpoint, or truncated"):
        read_header(path)


# 4. other model families


def family_file(path, names: list[str]):
    """A small real safetensors file with the tell-tale key names of a model family."""
    save_tensors({name: torch.zeros(4, 4) for name in names}, path)
    return path


REFINER = ["model.diffusion_model.input_blocks.0.0.weight", "model.diffusion_model.out.2.weight",
           "conditioner.embedders.0.model.ln_final.weight",
           "conditioner.embedders.0.model.transformer.resblocks.0.attn.in_proj_weight",
           "first_stage_model.decoder.conv_out.weight"]
SD15 = ["model.diffusion_model.input_blocks.0.0.weight",
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
        "first_stage_model.decoder.conv_out.weight"]


@pytest.mark.parametrize("names, message", [
    (REFINER, r"this is the SDXL refiner; LayerDiffuse needs an SDXL base model \(Pony, Illustrious, NoobAI"),
    (SD15, r"Stable Diffusion 1\.x checkpoint \(SD1\.5\)"),
])
def test_other_model_families_are_named(tmp_path, names, message):
    path = family_file(tmp_path / "other.safetensors", names)
    with pytest.raises(WeightFileError, match=message):
        single_file.load_single_file(path, single_file.SDXL_CONFIG_DIR)
    with pytest.raises(WeightFileError, match=message):
        validate.check_file(path)
    # Through the whole loader too, with no SDXL tokenizers anywhere: the family is named first.
    with pytest.raises(WeightFileError, match=message):
        load_bundle(LoadOptions(model=str(path), models_dir=str(tmp_path / "empty-models")))
    assert single_file.other_family(read_header(path)) is not None


def test_sdxl_base_is_no_other_family(tiny_files):
    assert single_file.other_family(read_header(tiny_files.checkpoint)) is None
