"""A full-size SDXL checkpoint in the original layout, checked from its header alone.

The file is sparse: a real safetensors header for all of SDXL's tensors (fp16) and a data section that
occupies no disk blocks, so ``models check`` and the checkpoint scan see a 6.9 GB file without one
being written. Well-known key names of the published sd_xl_base_1.0 checkpoint are asserted by hand.
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from backend.models import catalog, ldm_names, single_file
from backend.models.bundle import SDXL
from backend.models.loading import LoadOptions, resolve_base

ROOT = Path(__file__).resolve().parents[2]

# (name, shape) pairs as they appear in A1111/ComfyUI SDXL checkpoints.
KNOWN = {
    "model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
    "model.diffusion_model.label_emb.0.0.weight": [1280, 2816],
    "model.diffusion_model.input_blocks.3.0.op.weight": [320, 320, 3, 3],
    "model.diffusion_model.input_blocks.7.1.transformer_blocks.9.attn2.to_k.weight": [1280, 2048],
    "model.diffusion_model.middle_block.1.proj_in.weight": [1280, 1280],
    "model.diffusion_model.output_blocks.2.2.conv.weight": [1280, 1280, 3, 3],
    "model.diffusion_model.output_blocks.5.2.conv.weight": [640, 640, 3, 3],
    "model.diffusion_model.output_blocks.8.0.skip_connection.weight": [320, 640, 1, 1],
    "model.diffusion_model.out.2.weight": [4, 320, 3, 3],
    "first_stage_model.encoder.mid.attn_1.q.weight": [512, 512, 1, 1],
    "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight": [128, 256, 1, 1],
    "first_stage_model.quant_conv.weight": [8, 8, 1, 1],
    "conditioner.embedders.0.transformer.text_model.encoder.layers.11.mlp.fc2.weight": [768, 3072],
    "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight": [3840, 1280],
    "conditioner.embedders.1.model.text_projection": [1280, 1280],
    "conditioner.embedders.1.model.positional_embedding": [77, 1280],
}


def sparse_checkpoint(path: Path, tensors: dict[str, list[int]], extra: dict[str, tuple[str, list[int]]]) -> int:
    header, offset = {}, 0
    for name, (dtype, shape) in {**{k: ("F16", v) for k, v in tensors.items()}, **extra}.items():
        size = {"F16": 2, "I64": 8, "F32": 4}[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(8 + len(raw) + offset)  # a hole: no blocks written
    return offset


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, sdxl_meta):
    names: dict[str, list[int]] = {}
    unet, vae = sdxl_meta["unet"], sdxl_meta["vae"]
    for part in (ldm_names.unet_to_ldm(unet.state_dict(), dict(unet.config)),
                 ldm_names.vae_to_ldm(vae.state_dict(), dict(vae.config)),
                 ldm_names.clip_l_to_ldm(sdxl_meta["text_encoder"].state_dict()),
                 ldm_names.clip_g_to_ldm(sdxl_meta["text_encoder_2"].state_dict())):
        names.update({k: list(v.shape) for k, v in part.items()})
    folder = tmp_path_factory.mktemp("comfy") / "checkpoints"
    folder.mkdir()
    path = folder / "sd_xl_base_1.0.safetensors"
    # Extras real checkpoints carry and no module has.
    extra = {"conditioner.embedders.0.transformer.text_model.embeddings.position_ids": ("I64", [1, 77]),
             "conditioner.embedders.1.model.logit_scale": ("F32", [])}
    data = sparse_checkpoint(path, names, extra)
    assert 6.5e9 < data < 7.2e9  # SDXL base in fp16
    return path, names


def test_published_key_names_and_shapes_are_produced(checkpoint):
    _, names = checkpoint
    for name, shape in KNOWN.items():
        assert names.get(name) == shape, name
    assert sum(1 for k in names if "::" not in k and k.endswith(".to_q.weight") and "diffusion_model" in k) == 140


def test_full_size_checkpoint_validates_and_is_found(checkpoint):
    path, _ = checkpoint
    single_file.validate_checkpoint(path, single_file.SDXL_CONFIG_DIR)
    # 12 per OpenCLIP resblock; embeddings, ln_final, text_projection, and the ignored logit_scale
    assert single_file.describe_checkpoint(path)["text_encoder_2"] == 32 * 12 + 6
    models_dir = path.parent.parent
    assert catalog.sdxl_checkpoints(models_dir) == [path]
    # The sdxl preset and a bare file name both find it in the ComfyUI folder (no tokenizers here).
    for model in ("sdxl", path.name):
        source, architecture = resolve_base(LoadOptions(model, models_dir=str(models_dir)))
        assert (source.kind, source.location, architecture) == ("single_file", str(path), SDXL)
        assert source.config_dir == single_file.SDXL_CONFIG_DIR and source.tokenizers is None
    renamed = path.with_name("juggernaut_xl.safetensors")
    renamed.symlink_to(path)
    assert catalog.sdxl_checkpoints(models_dir) == [path, renamed]
    assert resolve_base(LoadOptions("sdxl", models_dir=str(models_dir)))[0].location == str(path)
    result = subprocess.run([sys.executable, "-m", "backend", "models", "check", str(path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert "format: sdxl-original" in result.stdout and "fits: sdxl" in result.stdout


def test_a_checkpoint_missing_one_tensor_is_refused_by_name(tmp_path, checkpoint):
    _, names = checkpoint
    names = dict(names)
    names.pop("model.diffusion_model.output_blocks.4.1.transformer_blocks.1.attn1.to_v.weight")
    path = tmp_path / "broken.safetensors"
    sparse_checkpoint(path, names, {})
    with pytest.raises(single_file.WeightFileError,
                       match=r"\[unet\]: missing tensor 'up_blocks.1.attentions.1.transformer_blocks.1.attn1.to_v"):
        single_file.validate_checkpoint(path, single_file.SDXL_CONFIG_DIR)
