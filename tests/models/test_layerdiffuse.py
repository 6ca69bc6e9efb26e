"""LayerDiffuse files in both published layouts, written here with the real key names, loaded through
the production loader and checked numerically."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from backend.models import file_kinds, layerdiffuse, tiny
from backend.models.layerdiffuse import WeightFileError
from backend.models.transparent_vae import (
    FULL_DECODER_CHANNELS,
    FULL_ENCODER_CHANNELS,
    TINY_DECODER_CHANNELS,
    TINY_ENCODER_CHANNELS,
    TransparentVAEDecoder,
    TransparentVAEEncoder,
    decode_rgba,
)

# The tiny UNet's ldm stacks, written out by hand (not computed by the code under test).
TINY_LDM = {"down_blocks.1.attentions.0": "input_blocks.4.1", "down_blocks.1.attentions.1": "input_blocks.5.1",
            "mid_block.attentions.0": "middle_block.1", "up_blocks.0.attentions.0": "output_blocks.0.1",
            "up_blocks.0.attentions.1": "output_blocks.1.1", "up_blocks.0.attentions.2": "output_blocks.2.1"}


@pytest.fixture(scope="module")
def unet():
    return tiny.build_components(0)["unet"]


def ldm_key(name: str, index: int) -> str:
    stack = next(s for s in TINY_LDM if name.startswith(s + "."))
    return f"diffusion_model.{TINY_LDM[stack]}{name[len(stack):]}.weight::lora::{index}"


def lora_tensors(unet, rank: int = 3, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    modules = dict(unet.named_modules())
    out = {}
    for name in tiny.attention_projections(unet):
        rows, cols = modules[name].weight.shape
        out[ldm_key(name, 0)] = torch.randn(rows, rank, generator=generator)
        out[ldm_key(name, 1)] = torch.randn(rank, cols, generator=generator)
    return out


def write(tmp_path: Path, name: str, tensors: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def test_lora_layout_merges_to_base_plus_up_down(tmp_path, unet):
    tensors = lora_tensors(unet)
    path = write(tmp_path, layerdiffuse.ATTN_ORIGINAL, {k: v.half() for k, v in tensors.items()})
    assert file_kinds.identify(layerdiffuse.read_header(path)) == "layerdiffuse-attn-lora"
    delta = layerdiffuse.load_attention(path, unet)
    assert len(delta) == len(tiny.attention_projections(unet)) == 96
    merged = dict(delta.merged_copy(unet).named_modules())
    base = dict(unet.named_modules())
    for name in ("up_blocks.0.attentions.2.transformer_blocks.0.attn2.to_k",
                 "down_blocks.1.attentions.0.transformer_blocks.1.attn1.to_out.0"):
        up, down = tensors[ldm_key(name, 0)].half().float(), tensors[ldm_key(name, 1)].half().float()
        torch.testing.assert_close(merged[name].weight, base[name].weight + up @ down)
    untouched = "up_blocks.0.attentions.2.proj_out"
    assert torch.equal(merged[untouched].weight, base[untouched].weight)


def test_full_size_sdxl_lora_keys_land_on_the_right_projections(tmp_path, sdxl_meta):
    """Rank-1 tensors with every one of the 1120 published key names: each lands on its diffusers Linear."""
    unet = sdxl_meta["unet"]
    stacks = {"down_blocks.1.attentions.0": "input_blocks.4.1", "down_blocks.1.attentions.1": "input_blocks.5.1",
              "down_blocks.2.attentions.0": "input_blocks.7.1", "down_blocks.2.attentions.1": "input_blocks.8.1",
              "mid_block.attentions.0": "middle_block.1"}
    stacks.update({f"up_blocks.{b}.attentions.{j}": f"output_blocks.{3 * b + j}.1" for b in (0, 1) for j in range(3)})
    modules = dict(unet.named_modules())
    tensors, marks = {}, {}
    for i, name in enumerate(tiny.attention_projections(unet)):
        stack = next(s for s in stacks if name.startswith(s + "."))
        key = f"diffusion_model.{stacks[stack]}{name[len(stack):]}.weight"
        rows, cols = modules[name].weight.shape
        tensors[key + "::lora::0"] = torch.full((rows, 1), float(i), dtype=torch.float16)
        tensors[key + "::lora::1"] = torch.ones(1, cols, dtype=torch.float16)
        marks[name] = float(i)
    assert len(tensors) == 1120
    path = write(tmp_path, layerdiffuse.ATTN_ORIGINAL, tensors)
    delta = layerdiffuse.load_attention(path, unet)
    delta.check_against(unet)
    assert len(delta) == 560
    for name, mark in marks.items():
        assert delta.factors[name][0][0, 0].item() == mark, name


def test_dense_layout_is_factorised_exactly(tmp_path, unet):
    generator = torch.Generator().manual_seed(2)
    modules = dict(unet.named_modules())
    offsets = {}
    for name in tiny.attention_projections(unet):
        rows, cols = modules[name].weight.shape
        offsets[name] = torch.randn(rows, 3, generator=generator) @ torch.randn(3, cols, generator=generator)
    path = write(tmp_path, layerdiffuse.ATTN_DIFFUSERS, {f"{k}.weight": v for k, v in offsets.items()})
    assert file_kinds.identify(layerdiffuse.read_header(path)) == "layerdiffuse-attn-dense"
    delta = layerdiffuse.load_attention(path, unet, rank=256, cache_dir=tmp_path / "cache")
    for name, offset in offsets.items():
        torch.testing.assert_close(delta.dense(name), offset, rtol=1e-4, atol=1e-4)
    assert len(list((tmp_path / "cache" / "factorised").glob("*.safetensors"))) == 1
    reused = layerdiffuse.load_attention(path, unet, rank=256, cache_dir=tmp_path / "cache")
    assert all(torch.equal(reused.factors[n][0], delta.factors[n][0]) for n in offsets)
    merged = dict(delta.merged_copy(unet).named_modules())
    name = "mid_block.attentions.0.transformer_blocks.0.attn2.to_v"
    torch.testing.assert_close(merged[name].weight, modules[name].weight + offsets[name], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("change, message", [
    (lambda t: t.update({"diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight::lora::0":
                         torch.zeros(32, 3)}), "unexpected tensor 'diffusion_model.input_blocks.1.1"),
    (lambda t: t.update({ldm_key("mid_block.attentions.0.transformer_blocks.0.attn1.to_q", 0): torch.zeros(63, 3)}),
     r"has shape \[63, 3\], expected up \[64, rank\]"),
    (lambda t: t.pop(ldm_key("up_blocks.0.attentions.1.transformer_blocks.0.attn2.to_v", 1)),
     "missing the LoRA pair for 'up_blocks.0.attentions.1.transformer_blocks.0.attn2.to_v'"),
    (lambda t: t.update({ldm_key("mid_block.attentions.0.transformer_blocks.0.attn1.to_q", 2): torch.zeros(1)}),
     "unexpected tensor"),
])
def test_lora_layout_mismatches_are_named(tmp_path, unet, change, message):
    tensors = lora_tensors(unet)
    change(tensors)
    path = write(tmp_path, layerdiffuse.ATTN_ORIGINAL, tensors)
    with pytest.raises(WeightFileError, match=message):
        layerdiffuse.load_attention(path, unet)


def test_dense_layout_mismatches_and_wrong_file_kind(tmp_path, unet):
    modules = dict(unet.named_modules())
    offsets = {f"{n}.weight": torch.zeros(modules[n].weight.shape) for n in tiny.attention_projections(unet)}
    offsets.pop("down_blocks.1.attentions.1.transformer_blocks.0.attn1.to_k.weight")
    path = write(tmp_path, layerdiffuse.ATTN_DIFFUSERS, offsets)
    with pytest.raises(WeightFileError, match="missing tensor 'down_blocks.1.attentions.1.transformer_blocks.0"):
        layerdiffuse.load_attention(path, unet)
    decoder = write(tmp_path, "d.safetensors", TransparentVAEDecoder(TINY_DECODER_CHANNELS).state_dict())
    with pytest.raises(WeightFileError, match="not a transparent-attention file.*decoder"):
        layerdiffuse.load_attention(decoder, unet)
    conditional = write(tmp_path, "c.safetensors",
                        {"diffusion_model.input_blocks.0.0.weight::diff::0": torch.zeros(320, 8, 3, 3)})
    assert file_kinds.identify(layerdiffuse.read_header(conditional)) == "layerdiffuse-conditional"


@pytest.mark.parametrize("filename", layerdiffuse.DECODER_FILES)
def test_decoder_file_reproduces_the_in_memory_module(tmp_path, filename):
    torch.manual_seed(5)
    reference = TransparentVAEDecoder(TINY_DECODER_CHANNELS).eval()
    with torch.no_grad():
        reference.latent_conv_in.weight.normal_(0, 0.1)  # zero in a fresh module: make the latent matter
    path = write(tmp_path, filename, reference.state_dict())
    loaded = layerdiffuse.load_decoder(path, TINY_DECODER_CHANNELS)
    generator = torch.Generator().manual_seed(0)
    pixel, latent = torch.rand(1, 3, 64, 64, generator=generator), torch.randn(1, 4, 8, 8, generator=generator)
    with torch.no_grad():
        expected = reference(pixel, latent)
        assert torch.equal(loaded(pixel, latent), expected)
        assert torch.equal(decode_rgba(loaded, pixel, latent, tta=False), decode_rgba(reference, pixel, latent, tta=False))
    assert expected.shape == (1, 4, 64, 64) and expected.abs().sum() > 0


def test_decoder_mismatches_are_named(tmp_path):
    state = TransparentVAEDecoder(TINY_DECODER_CHANNELS).state_dict()
    renamed = dict(state)
    renamed["down_blocks.6.attentions.1.to_q.weightx"] = renamed.pop("down_blocks.6.attentions.1.to_q.weight")
    with pytest.raises(WeightFileError, match="unexpected tensor 'down_blocks.6.attentions.1.to_q.weightx'"):
        layerdiffuse.load_decoder(write(tmp_path, "a.safetensors", renamed), TINY_DECODER_CHANNELS)
    with pytest.raises(WeightFileError, match=r"tensor 'conv_in.bias' has shape \[8\], expected \[32\]"):
        layerdiffuse.load_decoder(write(tmp_path, "b.safetensors", state), FULL_DECODER_CHANNELS)
    path = write(tmp_path, "c.safetensors", state)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(WeightFileError, match="truncated"):
        layerdiffuse.load_decoder(path, TINY_DECODER_CHANNELS)


def test_full_size_modules_match_the_published_files_on_the_meta_device():
    decoder = layerdiffuse.decoder_module(FULL_DECODER_CHANNELS).state_dict()
    encoder = layerdiffuse.encoder_module(FULL_ENCODER_CHANNELS).state_dict()
    assert (len(decoder), sum(t.numel() for t in decoder.values())) == (538, 104_104_804)
    assert (len(encoder), sum(t.numel() for t in encoder.values())) == (18, 1_181_764)
    assert decoder["up_blocks.0.resnets.0.conv1.weight"].shape == (512, 1024, 3, 3)
    assert decoder["down_blocks.6.attentions.1.to_q.weight"].shape == (512, 512)
    assert decoder["latent_conv_in.weight"].shape == (64, 4, 1, 1)
    assert sorted({k.split(".")[1] for k in encoder}, key=int) == [str(i) for i in range(0, 18, 2)]


def test_full_size_encoder_file_loads_with_the_scale_of_its_layout(tmp_path):
    """Both published names and a renamed copy of the same bytes: LayerDiffuse's x300 (METHOD.md 2.4)."""
    state = {k: v.half() for k, v in TransparentVAEEncoder(FULL_ENCODER_CHANNELS).state_dict().items()}
    scales = {}
    for name in (*layerdiffuse.ENCODER_FILES, "my_encoder.safetensors"):
        path = write(tmp_path, name, state)
        assert file_kinds.identify(layerdiffuse.read_header(path)) == "layerdiffuse-encoder"
        module = layerdiffuse.load_encoder(path, FULL_ENCODER_CHANNELS)
        assert torch.equal(module.blocks[0].weight, state["blocks.0.weight"].float())
        scales[name] = layerdiffuse.encoder_scale_for(path)
    assert scales == {"vae_transparent_encoder.safetensors": 300.0,
                      "ld_diffusers_sdxl_vae_transparent_encoder.safetensors": 300.0,
                      "my_encoder.safetensors": 300.0}
    assert layerdiffuse.LAYERDIFFUSE_ENCODER_SCALE == 300.0
    # The tiny test model's own encoder keeps x1, under the published name too.
    tiny_state = TransparentVAEEncoder(TINY_ENCODER_CHANNELS).state_dict()
    (tmp_path / "t").mkdir()
    assert layerdiffuse.encoder_scale_for(write(tmp_path / "t", layerdiffuse.ENCODER_FILES[1], tiny_state)) == 1.0
    with pytest.raises(WeightFileError, match="has shape"):
        layerdiffuse.load_encoder(write(tmp_path, "e.safetensors", state), TINY_ENCODER_CHANNELS)
    with pytest.raises(WeightFileError, match="not a transparent VAE encoder"):
        layerdiffuse.encoder_scale_for(write(tmp_path, "d.safetensors", {"latent_conv_in.weight": torch.zeros(1)}))
    narrow = dict(state, **{"blocks.16.bias": torch.zeros(5)})
    with pytest.raises(WeightFileError, match=r"'blocks.16.bias' has shape \[5\], expected \[4\]"):
        layerdiffuse.encoder_scale_for(write(tmp_path, "n.safetensors", narrow))


def test_optional_encoder_scale_override_and_unusable_files(tmp_path, caplog):
    state = TransparentVAEEncoder(FULL_ENCODER_CHANNELS).state_dict()
    path = write(tmp_path, "renamed.safetensors", state)
    attn, decoder = tmp_path / "a.safetensors", tmp_path / "d.safetensors"  # not read here
    files = layerdiffuse.LayerDiffuseFiles(attn, decoder, path)
    module, scale = layerdiffuse.load_optional_encoder(files, FULL_ENCODER_CHANNELS)
    assert module is not None and scale == 300.0
    files.encoder_scale = 2.5  # the override wins over the layout
    assert layerdiffuse.load_optional_encoder(files, FULL_ENCODER_CHANNELS)[1] == 2.5
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[:-10])
    for encoder, problem in ((None, "no transparent VAE encoder file"), (broken, "broken.safetensors: truncated"),
                             (tmp_path / "gone.safetensors", "gone.safetensors: no such file")):
        caplog.clear()
        result = layerdiffuse.load_optional_encoder(layerdiffuse.LayerDiffuseFiles(attn, decoder, encoder),
                                                    FULL_ENCODER_CHANNELS)
        assert result == (None, 1.0)
        assert problem in caplog.text and "re-blend will use the plain VAE latent" in caplog.text
    # The wrong widths (a tiny encoder given to SDXL) are reported, not raised.
    caplog.clear()
    tiny_file = write(tmp_path, "tiny.safetensors", TransparentVAEEncoder(TINY_ENCODER_CHANNELS).state_dict())
    assert layerdiffuse.load_optional_encoder(layerdiffuse.LayerDiffuseFiles(attn, decoder, tiny_file),
                                              FULL_ENCODER_CHANNELS) == (None, 1.0)
    assert "tiny.safetensors: tensor 'blocks.0.bias' has shape [8], expected [32]" in caplog.text


def test_find_files_takes_either_encoder_name_and_loads_without_one(tmp_path):
    for name in (layerdiffuse.ATTN_DIFFUSERS, layerdiffuse.DECODER_FILES[1]):
        (tmp_path / name).write_bytes(b"")
    assert layerdiffuse.find_files(tmp_path).encoder is None
    (tmp_path / layerdiffuse.ENCODER_FILES[1]).write_bytes(b"")
    found = layerdiffuse.find_files(tmp_path)
    assert found.encoder == tmp_path / layerdiffuse.ENCODER_FILES[1] and found.encoder_scale is None


def dense_offsets(unet) -> dict[str, torch.Tensor]:
    modules = dict(unet.named_modules())
    generator = torch.Generator().manual_seed(3)
    return {f"{n}.weight": torch.randn(modules[n].weight.shape, generator=generator) * 0.01
            for n in tiny.attention_projections(unet)}


@pytest.mark.parametrize("extra, message", [
    ("mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0.bias", "a bias offset"),
    ("mid_block.attentions.0.transformer_blocks.0.attn1.to_q.bias", "a bias offset"),
    ("format_version", "not the weight of an attention projection"),
])
def test_dense_layout_with_an_extra_tensor_is_identified_then_refused_by_name(tmp_path, unet, extra, message):
    offsets = dense_offsets(unet)
    offsets[extra] = torch.zeros(64 if extra.endswith(".bias") else 1)
    path = write(tmp_path, layerdiffuse.ATTN_DIFFUSERS, offsets)
    assert file_kinds.identify(layerdiffuse.read_header(path)) == "layerdiffuse-attn-dense"
    with pytest.raises(WeightFileError, match=rf"unexpected tensor '{re.escape(extra)}' \({message}.*expected only "
                                              r"the 96 '<attention projection>.weight' offsets"):
        layerdiffuse.load_attention(path, unet)


def test_dense_layout_wrong_shape_names_tensor_and_expected_shape(tmp_path, unet):
    offsets = dense_offsets(unet)
    name = "up_blocks.0.attentions.2.transformer_blocks.0.attn2.to_k.weight"
    offsets[name] = torch.zeros(64, 7)
    path = write(tmp_path, layerdiffuse.ATTN_DIFFUSERS, offsets)
    expected = list(dense_offsets(unet)[name].shape)
    with pytest.raises(WeightFileError, match=rf"'{re.escape(name)}' has shape \[64, 7\], expected "
                                              rf"{re.escape(str(expected))}"):
        layerdiffuse.load_attention(path, unet)


def test_majority_rule_does_not_take_a_unet_or_a_mostly_foreign_file_for_dense(unet):
    info = layerdiffuse.TensorInfo("F32", (1,))
    assert file_kinds.identify({k: info for k in unet.state_dict()}) == "diffusers-unet"
    few = {k: info for k in list(dense_offsets(unet))[:2]}
    few.update({f"other.{i}": info for i in range(3)})
    assert file_kinds.identify(few) == "unknown"


def test_large_dense_offsets_factorise_exactly_at_their_rank():
    """The randomised path (matrices wider than rank + oversampling) reproduces a rank-r offset."""
    generator = torch.Generator().manual_seed(4)
    offset = torch.randn(300, 40, generator=generator) @ torch.randn(40, 500, generator=generator)
    delta = layerdiffuse.factorise_dense({"x": offset}, rank=40)
    up, down = delta.factors["x"]
    assert up.shape == (300, 40) and down.shape == (40, 500)
    torch.testing.assert_close(up @ down, offset, rtol=1e-4, atol=1e-3)
    again = layerdiffuse.factorise_dense({"x": offset}, rank=40)
    assert torch.equal(again.factors["x"][0], up)  # deterministic probes
    # Truncating below the true rank loses signal: the loader still works, and warns.
    assert not torch.allclose(layerdiffuse.factorise_dense({"x": offset}, rank=20).dense("x"), offset, atol=1e-2)
