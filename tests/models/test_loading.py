"""load_bundle through every base-model source, offline, checked against the in-memory tiny model."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import save_file

from backend.models import catalog, file_kinds, layerdiffuse, single_file, tiny
from backend.models.bundle import TINY
from backend.models.catalog import ModelNotAvailable
from backend.models.loading import (
    BaseSource,
    LoadOptions,
    load_base,
    load_bundle,
    load_tokenizers,
    resolve_device,
    resolve_dtype,
)
from backend.models.tiny_files import TINY_FILES_VERSION, ensure_tiny_files, lora_layout


@pytest.fixture(scope="module")
def reference():
    return tiny.build_components(0)


@pytest.fixture(scope="module")
def bundle(tiny_files):
    return load_bundle(LoadOptions("tiny"))


def unet_inputs(batch: int = 2):
    generator = torch.Generator().manual_seed(7)
    sample = torch.randn(batch, 4, 8, 8, generator=generator)
    text = torch.randn(batch, 77, tiny.UNET_CONFIG["cross_attention_dim"], generator=generator)
    added = {"text_embeds": torch.randn(batch, tiny.TEXT_PROJECTION, generator=generator),
             "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * batch)}
    return sample, torch.tensor(500), text, added


def test_hub_is_off_in_tests():
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_tiny_bundle_loads_offline_from_its_single_file(bundle, tiny_files):
    assert bundle.architecture is TINY
    assert (bundle.device.type, bundle.dtype) == ("cpu", torch.float32)
    assert bundle.describe_device() == "cpu (float32)"
    assert bundle.sources["base"] == f"single_file: {tiny_files.checkpoint}"
    assert file_kinds.identify(layerdiffuse.read_header(tiny_files.checkpoint)) == "sdxl-original"
    assert file_kinds.identify(layerdiffuse.read_header(bundle.sources["attn"])) == "layerdiffuse-attn-lora"
    assert bundle.transparent_encoder_scale == 1.0
    assert len(bundle.transparent_attn) == 96 and bundle.transparent_attn.rank == 4


def test_single_file_unet_reproduces_the_in_memory_unet(bundle, reference):
    sample, t, text, added = unet_inputs()
    with torch.no_grad():
        got = bundle.unet(sample, t, encoder_hidden_states=text, added_cond_kwargs=added).sample
        want = reference["unet"](sample, t, encoder_hidden_states=text, added_cond_kwargs=added).sample
        assert torch.equal(got, want)
        ids = bundle.tokenizer(["a glass"], padding="max_length", max_length=77, return_tensors="pt").input_ids
        assert torch.equal(bundle.text_encoder_2(ids).text_embeds, reference["text_encoder_2"](ids).text_embeds)
        assert torch.equal(bundle.text_encoder(ids).last_hidden_state, reference["text_encoder"](ids).last_hidden_state)
        latent = torch.randn(1, 4, 8, 8)
        assert torch.equal(bundle.vae.decode(latent).sample, reference["vae"].decode(latent).sample)


def test_tiny_files_hold_the_in_memory_tiny_bundle(bundle):
    memory = tiny.build_bundle(0)
    assert set(bundle.transparent_attn.factors) == set(memory.transparent_attn.factors)
    for name, (up, down) in memory.transparent_attn.factors.items():
        assert torch.equal(bundle.transparent_attn.factors[name][0], up)
        assert torch.equal(bundle.transparent_attn.factors[name][1], down)
    for part in ("transparent_decoder", "transparent_encoder", "unet"):
        mine, theirs = getattr(bundle, part).state_dict(), getattr(memory, part).state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), part
    assert not any(p.requires_grad for p in bundle.unet.parameters())


def test_transparent_attention_of_the_tiny_files_is_base_plus_lora(bundle, reference):
    lora = lora_layout(tiny.build_bundle(0).transparent_attn, reference["unet"])
    name = "up_blocks.0.attentions.1.transformer_blocks.0.attn1.to_v"
    up = lora["diffusion_model.output_blocks.1.1.transformer_blocks.0.attn1.to_v.weight::lora::0"]
    down = lora["diffusion_model.output_blocks.1.1.transformer_blocks.0.attn1.to_v.weight::lora::1"]
    merged = dict(bundle.transparent_attn.merged_copy(bundle.unet).named_modules())[name].weight
    base = dict(reference["unet"].named_modules())[name].weight
    torch.testing.assert_close(merged, base + up @ down)


def test_single_file_tiny_checkpoint_generates_like_the_in_memory_model(bundle, reference):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    def run(parts):
        pipe = StableDiffusionXLPipeline(
            vae=parts["vae"], text_encoder=parts["text_encoder"], text_encoder_2=parts["text_encoder_2"],
            tokenizer=parts["tokenizer"], tokenizer_2=parts["tokenizer_2"], unet=parts["unet"],
            scheduler=EulerDiscreteScheduler.from_config(tiny.SCHEDULER_CONFIG))
        pipe.set_progress_bar_config(disable=True)
        return pipe("a glass", height=64, width=64, num_inference_steps=2, output_type="np",
                    generator=torch.Generator().manual_seed(3)).images

    loaded = dict(vars(bundle))
    assert bundle.scheduler_config["_class_name"] == "EulerDiscreteScheduler"
    image = run(loaded)
    assert image.shape == (1, 64, 64, 3)
    assert (image == run(reference)).all()


def test_tiny_files_are_written_once_and_rewritten_when_stale(tmp_path):
    files = ensure_tiny_files(tmp_path)
    stamp = files.root / "VERSION"
    assert files.root.name == f"tiny-v{TINY_FILES_VERSION}"
    first = files.checkpoint.stat().st_mtime_ns
    assert ensure_tiny_files(tmp_path).checkpoint.stat().st_mtime_ns == first
    stamp.write_text(json.dumps({"version": 0}))
    again = ensure_tiny_files(tmp_path)
    assert json.loads(again.root.joinpath("VERSION").read_text())["version"] == TINY_FILES_VERSION
    # Same seed, same bytes: the rewrite is deterministic.
    assert again.checkpoint.read_bytes() == ensure_tiny_files().checkpoint.read_bytes()


def test_diffusers_folder_with_diffusers_layout_layerdiffuse_files(tmp_path, reference, tiny_files):
    folder = tmp_path / "tiny-diffusers"
    for name in ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):
        reference[name].save_pretrained(folder / name)
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(tiny.SCHEDULER_CONFIG))
    # The diffusers-named LayerDiffuse files: dense offsets and the encoder.
    lora = layerdiffuse.load_attention(tiny_files.layer_model / layerdiffuse.ATTN_ORIGINAL, reference["unet"])
    dense = {f"{name}.weight": lora.dense(name) for name in lora.factors}
    attn = tmp_path / layerdiffuse.ATTN_DIFFUSERS
    save_file(dense, str(attn))
    encoder = tmp_path / "ld_diffusers_sdxl_vae_transparent_encoder.safetensors"
    shutil.copy(tiny_files.layer_model / "vae_transparent_encoder.safetensors", encoder)
    decoder = tmp_path / layerdiffuse.DECODER_FILES[1]
    shutil.copy(tiny_files.layer_model / layerdiffuse.DECODER_FILES[0], decoder)

    loaded = load_bundle(LoadOptions(str(folder), layerdiffuse_files={"attn": attn, "decoder": decoder,
                                                                      "encoder": encoder}))
    assert loaded.architecture is TINY and loaded.sources["base"] == f"folder: {folder}"
    # The tiny encoder keeps its own x1 under the diffusers name: the scale follows the layout, not the name.
    assert loaded.transparent_encoder_scale == 1.0
    sample, t, text, added = unet_inputs(1)
    with torch.no_grad():
        assert torch.equal(loaded.unet(sample, t, encoder_hidden_states=text, added_cond_kwargs=added).sample,
                           reference["unet"](sample, t, encoder_hidden_states=text, added_cond_kwargs=added).sample)
    for name in lora.factors:
        torch.testing.assert_close(loaded.transparent_attn.dense(name), lora.dense(name), rtol=1e-4, atol=1e-4)
    override = load_bundle(LoadOptions("tiny", layerdiffuse_files={"encoder": encoder, "encoder_scale": 2.5}))
    assert override.transparent_encoder_scale == 2.5


def test_tiny_checkpoint_by_path_and_in_a_comfyui_models_dir(tiny_files, reference):
    by_path = load_bundle(LoadOptions(str(tiny_files.checkpoint)))
    assert by_path.architecture is TINY
    assert torch.equal(by_path.unet.conv_in.weight, reference["unet"].conv_in.weight)
    # The tiny checkpoint has SDXL's layout but not its size: never taken for the sdxl preset.
    assert catalog.sdxl_checkpoints(tiny_files.root) == []
    assert catalog.layerdiffuse_files(tiny_files.root).attn.name == layerdiffuse.ATTN_ORIGINAL


def test_tiny_checkpoint_against_sdxl_configs_names_the_first_mismatch(tiny_files):
    with pytest.raises(layerdiffuse.WeightFileError, match=r"\[unet\]: tensor '.*' has shape \[\d+.*expected \[\d+"):
        single_file.load_single_file(tiny_files.checkpoint, single_file.SDXL_CONFIG_DIR)


def test_clear_messages_when_sdxl_is_not_here(tmp_path, tiny_files):
    with pytest.raises(ModelNotAvailable, match="LayerDiffuse SDXL files are not on this machine.*models download sdxl"):
        load_bundle(LoadOptions("sdxl", models_dir=str(tmp_path)))
    ld = {"attn": tiny_files.layer_model / layerdiffuse.ATTN_ORIGINAL,
          "decoder": tiny_files.layer_model / layerdiffuse.DECODER_FILES[0]}
    with pytest.raises(ModelNotAvailable, match="cannot load the SDXL model from 'nobody/nothing'.*models download sdxl"):
        load_bundle(LoadOptions("nobody/nothing", layerdiffuse_files=ld))
    with pytest.raises(ModelNotAvailable, match="tokenizers are not on this machine.*sdxl-tokenizers"):
        load_base(BaseSource("single_file", str(tiny_files.checkpoint), single_file.SDXL_CONFIG_DIR, None),
                  torch.float16, None)
    # The message names the folder it looked in, never a placeholder.
    with pytest.raises(ModelNotAvailable) as told:
        load_base(BaseSource("single_file", str(tiny_files.checkpoint), single_file.SDXL_CONFIG_DIR, None, tmp_path),
                  torch.float16, None)
    assert str(tmp_path / "sdxl_tokenizers") in str(told.value) and "<" not in str(told.value)
    with pytest.raises(ModelNotAvailable, match="no such file or folder"):
        load_bundle(LoadOptions(str(tmp_path / "missing.safetensors")))


def test_device_and_dtype_choices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_dtype(torch.device("cpu")) == torch.float32
    assert resolve_dtype(torch.device("cuda")) == torch.float16
    assert resolve_dtype(torch.device("mps")) == torch.float16
    assert resolve_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_dtype(torch.device("cpu"), "int8")
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(ModelNotAvailable, match="no usable CUDA"):
            resolve_device("cuda")


def test_memory_options_and_bf16_are_applied(tiny_files):
    loaded = load_bundle(LoadOptions("tiny", dtype="bf16", vae_tiling=True, attention_slicing=True, cpu_offload=True))
    assert loaded.dtype == torch.bfloat16
    assert {p.dtype for p in loaded.unet.parameters()} == {torch.bfloat16}
    assert next(loaded.transparent_decoder.parameters()).dtype == torch.bfloat16
    assert loaded.transparent_attn.factors[next(iter(loaded.transparent_attn.factors))][0].dtype == torch.bfloat16
    assert loaded.vae.use_tiling and loaded.attention_slicing and loaded.cpu_offload


def test_separate_vae_file_in_either_layout(tmp_path, tiny_files, reference):
    from backend.models import ldm_names

    other = tiny.build_components(9)["vae"]
    original = {k[len(ldm_names.VAE_PREFIX):]: v for k, v in
                ldm_names.vae_to_ldm(other.state_dict(), dict(other.config)).items()}
    save_file({k: v.contiguous() for k, v in original.items()}, str(tmp_path / "sdxl_vae.safetensors"))
    save_file(other.state_dict(), str(tmp_path / "diffusion_pytorch_model.safetensors"))
    latent = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        want = other.decode(latent).sample
        for name, kind in (("sdxl_vae.safetensors", "vae-original"),
                           ("diffusion_pytorch_model.safetensors", "diffusers-vae")):
            assert file_kinds.identify(layerdiffuse.read_header(tmp_path / name)) == kind
            loaded = load_bundle(LoadOptions("tiny", vae=str(tmp_path / name)))
            assert torch.equal(loaded.vae.decode(latent).sample, want)
            assert not torch.equal(want, reference["vae"].decode(latent).sample)
    with pytest.raises(layerdiffuse.WeightFileError, match="not a VAE file"):
        load_bundle(LoadOptions("tiny", vae=str(tiny_files.layer_model / layerdiffuse.ATTN_ORIGINAL)))


def test_tokenizers_from_one_clip_folder_like_comfyuis(tmp_path, reference):
    """A --models-dir inside a ComfyUI install: its comfy/sd1_tokenizer (model_max_length 8192) serves both."""
    comfy = tmp_path / "ComfyUI"
    tiny.write_tokenizer(comfy / "comfy" / "sd1_tokenizer", "<|endoftext|>")
    config = comfy / "comfy" / "sd1_tokenizer" / "tokenizer_config.json"
    config.write_text(config.read_text().replace('"model_max_length": 77', '"model_max_length": 8192'))
    (comfy / "models").mkdir()
    folders = catalog.tokenizer_folders(comfy / "models")
    assert folders == ((comfy / "comfy" / "sd1_tokenizer").resolve(), None)
    first, second = load_tokenizers(*folders)
    assert first.model_max_length == second.model_max_length == 77
    assert second.pad_token == "!" and first.pad_token == "<|endoftext|>"
    for mine, theirs in ((first, reference["tokenizer"]), (second, reference["tokenizer_2"])):
        assert mine("a cat", padding="max_length", max_length=77).input_ids == \
            theirs("a cat", padding="max_length", max_length=77).input_ids
    assert catalog.tokenizer_folders(tmp_path / "elsewhere") is None


def test_allowed_download_says_offline_clearly(tmp_path):
    with pytest.raises(ModelNotAvailable, match="offline: HF_HUB_OFFLINE is set"):
        load_bundle(LoadOptions("sdxl", models_dir=str(tmp_path), allow_download=True))
